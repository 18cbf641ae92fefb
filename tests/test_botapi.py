"""BotAPI against the fake Bot API server over real sockets, and the fake's own rules."""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from contextlib import contextmanager

import pytest
import requests

from hermes_min.connection import HttpSession
from hermes_min.errors import ConfigError, TelegramError
from hermes_min.telegram.botapi import BotAPI, api_error, telegram_settings
from tests.fake_botapi import (
    DRAFT_ID_INVALID,
    DRAFT_PEER_INVALID,
    NOT_MODIFIED,
    POLL_CONFLICT,
    TEXT_EMPTY,
    TOO_LONG,
    WEBHOOK_CONFLICT,
    FakeBotAPI,
    FakeClock,
    _draft_errors,
    load_validator,
    parse_text,
)

USER = 42
GROUP = -1001234567890


@pytest.fixture
def fake():
    with FakeBotAPI(rate_limits=False) as server:
        yield server


@pytest.fixture
def api(fake):
    with BotAPI(fake.token, fake.api_base, read_timeout=5) as client:
        yield client


@contextmanager
def served(**options):
    """A fake server with these options and a client for it."""
    with FakeBotAPI(**options) as server, BotAPI(server.token, server.api_base) as client:
        yield server, client


def raises(call, *args, **kwargs) -> TelegramError:
    """The TelegramError `call` raises."""
    with pytest.raises(TelegramError) as info:
        call(*args, **kwargs)
    return info.value


def everything_about(err: BaseException) -> str:
    """Every text a user or a log could see of an exception and its chain."""
    chain = traceback.format_exception(type(err), err, err.__traceback__)
    return "\n".join([str(err), repr(err), *chain, str(err.__cause__), str(err.__context__)])


def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- payload shapes

PAYLOADS = [
    ("get_me", lambda api: api.get_me(), "getMe", {}),
    (
        "send_minimal",
        lambda api: api.send_message(USER, "hello"),
        "sendMessage",
        {"chat_id": USER, "text": "hello"},
    ),
    (
        "send_full",
        lambda api: api.send_message(
            GROUP,
            "<b>hi</b>",
            parse_mode="HTML",
            message_thread_id=7,
            reply_to_message_id=3,
            disable_link_preview=True,
        ),
        "sendMessage",
        {
            "chat_id": GROUP,
            "text": "<b>hi</b>",
            "parse_mode": "HTML",
            "message_thread_id": 7,
            "reply_parameters": {"message_id": 3, "allow_sending_without_reply": True},
            "link_preview_options": {"is_disabled": True},
        },
    ),
    (
        "edit",
        lambda api: api.edit_message_text(
            USER,
            api.send_message(USER, "a")["message_id"],
            "*b*",
            parse_mode="MarkdownV2",
            disable_link_preview=True,
        ),
        "editMessageText",
        {
            "chat_id": USER,
            "message_id": 1,
            "text": "*b*",
            "parse_mode": "MarkdownV2",
            "link_preview_options": {"is_disabled": True},
        },
    ),
    (
        "delete",
        lambda api: api.delete_message(USER, api.send_message(USER, "a")["message_id"]),
        "deleteMessage",
        {"chat_id": USER, "message_id": 1},
    ),
    (
        "draft",
        lambda api: api.send_message_draft(USER, 99, "par", message_thread_id=5, parse_mode="HTML"),
        "sendMessageDraft",
        {
            "chat_id": USER,
            "draft_id": 99,
            "text": "par",
            "message_thread_id": 5,
            "parse_mode": "HTML",
        },
    ),
    (
        "draft_minimal",
        lambda api: api.send_message_draft(USER, 1, ""),
        "sendMessageDraft",
        {"chat_id": USER, "draft_id": 1, "text": ""},
    ),
    (
        "typing",
        lambda api: api.send_chat_action(GROUP, message_thread_id=7),
        "sendChatAction",
        {"chat_id": GROUP, "action": "typing", "message_thread_id": 7},
    ),
    (
        "updates",
        lambda api: api.get_updates(offset=5, allowed_updates=["message"]),
        "getUpdates",
        {"offset": 5, "timeout": 0, "limit": 100, "allowed_updates": ["message"]},
    ),
    ("updates_default", lambda api: api.get_updates(), "getUpdates", {"timeout": 0, "limit": 100}),
    ("webhook_info", lambda api: api.get_webhook_info(), "getWebhookInfo", {}),
    ("delete_webhook", lambda api: api.delete_webhook(), "deleteWebhook", {}),
]


@pytest.mark.parametrize(
    "call, method, payload", [p[1:] for p in PAYLOADS], ids=[p[0] for p in PAYLOADS]
)
def test_each_method_sends_the_documented_payload(fake, api, call, method, payload):
    fake.add_topic(GROUP, 7)
    fake.add_topic(USER, 5)
    call(api)
    last = fake.calls[-1]
    assert (last.method, last.payload, last.status) == (method, payload, 200)
    fake.assert_clean()
    check = load_validator()
    if check is not None:
        assert check(method, payload) == []


def test_send_message_returns_the_message(fake, api):
    message = api.send_message(USER, "*bold* text", parse_mode="MarkdownV2")
    assert message["text"] == "bold text"
    assert message["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
    assert message["chat"] == {"id": USER, "type": "private", "first_name": "Test"}


def test_get_updates_read_timeout_exceeds_the_long_poll(fake):
    seen = []

    class Recording(HttpSession):
        def request(self, method, url, **kwargs):
            seen.append(kwargs["timeout"])
            return super().request(method, url, **kwargs)

    fake.queue_text(USER, "hi")  # so the 30 s long poll returns at once
    settings = telegram_settings(connect_timeout=10.0, read_timeout=30.0)
    with Recording(settings) as http, BotAPI(fake.token, fake.api_base, http=http) as api:
        assert len(api.get_updates(timeout=30)) == 1
        api.get_me()
    assert seen == [(10.0, 40.0), (10.0, 30.0)]


# ---------------------------------------------------------------------- error model


def test_ok_false_becomes_telegram_error_with_code_and_description(fake, api):
    fake.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    err = raises(api.send_message, USER, "x")
    assert (err.method, err.error_code, err.description) == (
        "sendMessage",
        403,
        "Forbidden: bot was blocked by the user",
    )
    assert err.retry_after is None and err.migrate_to_chat_id is None
    assert err.fatal_for_chat and not err.transient


def test_retry_after_comes_from_parameters(fake, api):
    fake.fail("editMessageText", 429, "Too Many Requests: retry after 35", retry_after=7)
    err = raises(api.edit_message_text, USER, 1, "x")
    assert err.retry_after == 7 and err.rate_limited


def test_retry_after_falls_back_to_the_description(fake, api):
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 12")
    assert raises(api.send_message, USER, "x").retry_after == 12


def test_migrate_to_chat_id_is_carried(fake, api):
    fake.migrate_chat(-555, -1009999)
    err = raises(api.send_message, -555, "x")
    assert (err.error_code, err.migrate_to_chat_id) == (400, -1009999)
    assert "upgraded to a supergroup" in err.description


def test_html_page_from_a_proxy_is_one_clear_error(fake, api, caplog):
    caplog.set_level(logging.DEBUG)
    page = f"<html><body><h1>502 Bad Gateway</h1>/bot{fake.token}/getMe</body></html>"
    fake.reply("getMe", 502, page)
    err = raises(api.get_me)
    assert err.error_code == 502 and err.transient
    assert "non-JSON" in err.description and "text/html" in err.description
    assert fake.token not in everything_about(err) + caplog.text


@pytest.mark.parametrize("body", ['{"result": 1}', "[1, 2]", "plain text"])
def test_a_body_that_is_not_a_bot_api_reply_is_an_error(fake, api, body):
    fake.reply("getMe", 200, body, "application/json")
    assert raises(api.get_me).error_code == 200


def test_server_errors_are_transient(fake, api):
    fake.fail("sendMessage", 500, times=2)
    for _ in range(2):
        assert raises(api.send_message, USER, "x").transient
    assert api.send_message(USER, "x")["text"] == "x"


def test_connection_refused_is_a_network_error_without_the_token(caplog):
    caplog.set_level(logging.DEBUG)
    token = "987654321:AAsecretTokenThatMustNeverLeak_xyz123"
    with BotAPI(token, f"http://127.0.0.1:{closed_port()}", connect_timeout=2) as api:
        err = raises(api.get_me)
    assert err.error_code is None and err.transient
    assert "network error" in err.description and "refused" in err.description
    assert err.__cause__ is None and err.__context__ is None
    assert token not in everything_about(err) + caplog.text


def test_read_timeout_is_a_network_error_without_the_token(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.hang("getMe", seconds=10)
    with BotAPI(fake.token, fake.api_base, read_timeout=0.2) as api:
        err = raises(api.get_me)
    assert err.error_code is None and "timed out" in err.description
    assert fake.token not in everything_about(err) + caplog.text


def test_connection_reset_is_a_network_error(fake, api):
    fake.drop_connection("sendChatAction")
    err = raises(api.send_chat_action, USER)
    assert err.error_code is None and err.transient
    assert fake.token not in everything_about(err)
    assert api.send_chat_action(USER) is True  # the next call gets a fresh connection


def test_token_is_not_logged_on_success(fake, api, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # (the CLI quiets it; a test may have run it)
    api.send_message(USER, "hello")
    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("sendMessage" in line for line in urllib3_lines)  # the line exists, redacted
    assert fake.token not in caplog.text
    assert any(r.name == "hermes_min.telegram.botapi" for r in caplog.records)


def test_wrong_token_is_unauthorized(fake):
    with BotAPI("1:wrong", fake.api_base) as api:
        err = raises(api.get_me)
    assert (err.error_code, err.description) == (401, "Unauthorized")


def test_unknown_method_is_not_found(fake, api):
    err = raises(api._call, "sendMesage", {"chat_id": 1, "text": "x"})
    assert (err.error_code, err.description) == (404, "Not Found: method not found")


def test_client_lifecycle(fake):
    closed = []

    class Session(HttpSession):
        def close(self):
            closed.append(True)
            super().close()

    with Session(telegram_settings()) as http:
        api = BotAPI(fake.token, fake.api_base, http=http)
        assert fake.token not in repr(api)
        api.close()
        api.close()
        assert closed == []  # a session the caller passed in stays theirs
        with pytest.raises(RuntimeError):
            api.get_me()
    with pytest.raises(ConfigError):
        BotAPI("  ")


@pytest.mark.parametrize(
    "code, description, kind",
    [
        (400, NOT_MODIFIED, "not_modified"),
        (429, "Too Many Requests: retry after 3", "rate_limited"),
        (403, "Forbidden: bot was kicked from the group chat", "chat_gone"),
        (403, "Forbidden: user is deactivated", "chat_gone"),
        (400, "Bad Request: chat not found", "chat_gone"),
        (400, "Bad Request: message to edit not found", "message_gone"),
        (400, "Bad Request: message thread not found", "thread_gone"),
        (400, "Bad Request: can't parse entities: Can't find end of Bold entity", "parse"),
        (502, "Bad Gateway", "server"),
        (401, "Unauthorized", "unauthorized"),
        (404, "Not Found", "unauthorized"),
        (409, WEBHOOK_CONFLICT, "webhook"),
        (409, POLL_CONFLICT, "conflict"),
        (400, "Bad Request: message is too long", "bad_request"),
    ],
)
def test_the_kind_is_decided_from_the_code_and_description(code, description, kind):
    body = {"ok": False, "error_code": code, "description": description}
    assert api_error("sendMessage", body, code).kind == kind


def test_the_kinds_say_what_to_do():
    def kind(name, **extra):
        return TelegramError("sendMessage", "x", kind=name, **extra)

    assert kind("network").transient and kind("server").transient
    assert not kind("bad_request").transient and not kind("not_api").transient
    assert kind("chat_gone").fatal_for_chat and kind("unauthorized").fatal_for_chat
    assert not kind("rate_limited").fatal_for_chat and kind("rate_limited").rate_limited


# ---------------------------------------------------------------------- fake: text rules


@pytest.mark.parametrize(
    "text, parse_mode, seen",
    [
        ("x" * 4096, None, "x" * 4096),
        ("😀" * 2048, None, "😀" * 2048),  # 4096 UTF-16 units
        ("<b>" + "x" * 4096 + "</b>", "HTML", "x" * 4096),  # markup does not count
        ("\\." * 4096, "MarkdownV2", "." * 4096),
        ("&lt;" * 4096, "HTML", "<" * 4096),
    ],
)
def test_fake_accepts_4096_visible_utf16_units(fake, api, text, parse_mode, seen):
    sent = api.send_message(USER, text, parse_mode=parse_mode)
    # What the user reads is the whole text, markup parsed away, not a cut or mangled copy.
    assert sent["text"] == seen and fake.texts(USER) == [seen]
    assert len(seen.encode("utf-16-le")) == 2 * 4096


@pytest.mark.parametrize(
    "text, parse_mode",
    [
        ("x" * 4097, None),
        ("😀" * 2049, None),
        ("*" + "x" * 4097 + "*", "MarkdownV2"),
    ],
)
def test_fake_refuses_more_than_4096_visible_units(fake, api, text, parse_mode):
    assert raises(api.send_message, USER, text, parse_mode=parse_mode).description == TOO_LONG


@pytest.mark.parametrize("text, parse_mode", [("", None), (" \n ", None), ("<b></b>", "HTML")])
def test_fake_refuses_empty_text(fake, api, text, parse_mode):
    assert raises(api.send_message, USER, text, parse_mode=parse_mode).description == TEXT_EMPTY


MDV2_BAD = [
    "a.b",
    "1+1=2",
    "(x)",
    "a|b",
    "!",
    "*bold",
    "_italic",
    "__underline",
    "~strike",
    "||spoiler",
    "`code",
    "```\npre",
    "[link](http://x",
    "[link",
    "*a _b* c_",
    "```\na`b```",
    "# heading",
    "- item",
    "a ] b",
]


@pytest.mark.parametrize("text", MDV2_BAD)
def test_fake_refuses_bad_markdown_v2(fake, api, text):
    err = raises(api.send_message, USER, text, parse_mode="MarkdownV2")
    assert err.error_code == 400 and err.kind == "parse"


MDV2_GOOD = [
    ("*b* _i_ __u__ ~s~ ||sp||", "b i u s sp"),
    ("a\\.b \\- c\\!", "a.b - c!"),
    ("`a.b*c`", "a.b*c"),
    ("```python\nprint(1) # ok.\n```", "print(1) # ok.\n"),
    ("[site](http://example.com/a_(b\\))", "site"),
    ("*bold _italic bold_*", "bold italic bold"),
    ("___italic underline_\r__", "italic underline\r"),
    (">quoted\\.\n>still", "quoted.\nstill"),
]


@pytest.mark.parametrize("text, visible", MDV2_GOOD)
def test_fake_accepts_good_markdown_v2(fake, api, text, visible):
    api.send_message(USER, text + " end", parse_mode="MarkdownV2")
    assert fake.texts(USER) == [visible + " end"]


HTML_BAD = [
    "<br>",
    "<b>x",
    "<b><i>x</b></i>",
    "a < b",
    "a & b",
    "</b>",
    "<span>x</span>",
    "<p>x</p>",
    "<b",
    "<a href=x y>l</a>",
    "x &nbsp; y",
]


@pytest.mark.parametrize("text", HTML_BAD)
def test_fake_refuses_bad_html(fake, api, text):
    assert raises(api.send_message, USER, text, parse_mode="HTML").kind == "parse"


HTML_GOOD = [
    (
        "<b>b</b> <strong>s</strong> <i>i</i> <u>u</u> <s>s</s> <tg-spoiler>x</tg-spoiler>",
        "b s i u s x",
    ),
    ('<a href="http://x?a=1&amp;b=2">l</a> &lt;&gt;&amp;&quot;&#33;&#x21;', 'l <>&"!!'),
    ('<pre><code class="language-py">if a > b:</code></pre>', "if a > b:"),
    ('<span class="tg-spoiler">s</span> <blockquote expandable>q</blockquote>', "s q"),
    ("a > b", "a > b"),
]


@pytest.mark.parametrize("text, visible", HTML_GOOD)
def test_fake_accepts_good_html(fake, api, text, visible):
    api.send_message(USER, text, parse_mode="HTML")
    assert fake.texts(USER) == [visible]


def test_fake_reports_entities_in_utf16_units():
    assert parse_text("😀 *b*", "MarkdownV2") == (
        "😀 b",
        [{"type": "bold", "offset": 3, "length": 1}],
    )
    assert parse_text('<pre><code class="language-py">x</code></pre>', "HTML") == (
        "x",
        [{"type": "pre", "offset": 0, "length": 1, "language": "py"}],
    )


def test_fake_names_the_byte_offset_of_a_parse_error(fake, api):
    err = raises(api.send_message, USER, "é *x", parse_mode="MarkdownV2")
    assert err.description == (
        "Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 3"
    )


# ---------------------------------------------------------------------- fake: edits, drafts


def test_fake_refuses_an_identical_edit(fake, api):
    message_id = api.send_message(USER, "<b>hello</b>", parse_mode="HTML")["message_id"]
    err = raises(api.edit_message_text, USER, message_id, "*hello*", parse_mode="MarkdownV2")
    assert err.description == NOT_MODIFIED and err.kind == "not_modified"
    again = raises(api.edit_message_text, USER, message_id, "<b>hello</b>\n", parse_mode="HTML")
    assert again.kind == "not_modified"
    api.edit_message_text(USER, message_id, "hello")  # same text, no bold: a change
    assert fake.message(USER, message_id).history == ["hello"]
    assert fake.texts(USER) == ["hello"]


def test_fake_edit_of_an_unknown_or_deleted_message(fake, api):
    assert raises(api.edit_message_text, USER, 77, "x").kind == "message_gone"
    message_id = api.send_message(USER, "x")["message_id"]
    assert api.delete_message(USER, message_id) is True
    assert raises(api.edit_message_text, USER, message_id, "y").kind == "message_gone"
    err = raises(api.delete_message, USER, message_id)
    assert err.description == "Bad Request: message to delete not found"
    assert fake.texts(USER) == []


def test_fake_refuses_drafts_outside_private_chats_and_a_zero_id(fake, api):
    assert raises(api.send_message_draft, GROUP, 5, "x").description == DRAFT_PEER_INVALID
    assert raises(api.send_message_draft, USER, 0, "x").description == DRAFT_ID_INVALID


def test_fake_shows_a_draft_until_a_message_in_the_same_topic(fake, api):
    fake.add_topic(USER, 3)
    api.send_message_draft(USER, 9, "Hel", message_thread_id=3)
    api.send_message_draft(USER, 9, "Hello", message_thread_id=3)
    draft = fake.draft(USER, 3)
    assert (draft.draft_id, draft.text, draft.updates) == (9, "Hello", 2)
    api.send_message(USER, "other topic")
    assert fake.draft(USER, 3) is not None
    api.send_message(USER, "Hello!", message_thread_id=3)
    assert fake.draft(USER, 3) is None


def test_fake_draft_expires_after_30_seconds():
    clock = FakeClock()
    with served(clock=clock, rate_limits=False) as (fake, api):
        api.send_message_draft(USER, 1, "")  # "Thinking..." placeholder since Bot API 10.0
        clock.advance(29.9)
        assert fake.draft(USER).text == ""
        clock.advance(0.1)
        assert fake.draft(USER) is None


def test_fake_threads_must_exist(fake, api):
    assert raises(api.send_message, GROUP, "x", message_thread_id=8).kind == "thread_gone"
    fake.add_topic(GROUP, 8)
    api.send_message(GROUP, "x", message_thread_id=8)
    api.send_chat_action(GROUP, message_thread_id=8)
    fake.remove_topic(GROUP, 8)
    assert raises(api.send_chat_action, GROUP, message_thread_id=8).kind == "thread_gone"


def test_fake_replies_and_missing_reply_targets(fake, api):
    incoming = fake.queue_text(USER, "question")["message"]["message_id"]
    answer = api.send_message(USER, "answer", reply_to_message_id=incoming)
    assert fake.message(USER, answer["message_id"]).reply_to == incoming
    api.send_message(USER, "still sent", reply_to_message_id=999)
    err = raises(
        api._call,
        "sendMessage",
        {"chat_id": USER, "text": "x", "reply_parameters": {"message_id": 999}},
    )
    assert err.description == "Bad Request: message to be replied not found"


def test_fake_blocked_chat(fake, api):
    fake.block_chat(USER)
    assert raises(api.send_chat_action, USER).fatal_for_chat


# ---------------------------------------------------------------------- fake: flood control


def test_fake_rate_limits_each_chat_across_all_methods():
    clock = FakeClock()
    with served(clock=clock) as (fake, api):
        api.send_chat_action(USER)
        message_id = api.send_message(USER, "a")["message_id"]
        api.send_message_draft(USER, 1, "b")  # burst of 3 used up
        err = raises(api.edit_message_text, USER, message_id, "c")
        assert err.rate_limited and err.retry_after == 1
        assert err.description == "Too Many Requests: retry after 1"
        api.send_message(USER + 1, "another chat is not affected")
        clock.advance(1.0)
        api.edit_message_text(USER, message_id, "c")
        assert raises(api.delete_message, USER, message_id).rate_limited


def test_fake_rate_limits_groups_to_20_messages_a_minute():
    clock = FakeClock()
    with served(clock=clock, per_chat_interval=0) as (fake, api):
        for i in range(20):
            clock.advance(0.5)
            api.send_message(GROUP, f"m{i}")
        err = raises(api.send_message, GROUP, "one too many")
        assert err.retry_after == 51  # the first of the 20 leaves the window in 50.5 s
        api.send_chat_action(GROUP)  # not a message
        clock.advance(50.5)
        api.send_message(GROUP, "fits again")


def test_fake_rate_limit_windows_are_configurable():
    with served(per_chat_interval=60, per_chat_burst=1, retry_after=0.05) as (fake, api):
        api.send_message(USER, "a")
        assert raises(api.send_message, USER, "b").retry_after == 0.05
        assert [c.status for c in fake.calls] == [200, 429]


# ---------------------------------------------------------------------- fake: getUpdates


def test_fake_offset_confirms_updates_forever(fake, api):
    ids = [fake.queue_text(USER, f"m{i}")["update_id"] for i in range(3)]
    assert [u["update_id"] for u in api.get_updates()] == ids
    assert [u["update_id"] for u in api.get_updates(offset=ids[1])] == ids[1:]
    assert api.get_updates(offset=ids[2] + 1) == []
    assert api.get_updates() == [] and fake.pending_updates == []


def test_fake_negative_offset_keeps_the_last_updates(fake, api):
    ids = [fake.queue_text(USER, f"m{i}")["update_id"] for i in range(3)]
    assert [u["update_id"] for u in api.get_updates(offset=-1)] == ids[-1:]
    assert [u["update_id"] for u in api.get_updates()] == ids[-1:]


def test_fake_builds_text_updates(fake, api):
    fake.queue_text(7, "hi group", chat_id=GROUP, message_thread_id=4)
    (update,) = api.get_updates(limit=1)
    message = update["message"]
    assert (message["from"]["id"], message["chat"]["type"], message["text"]) == (
        7,
        "supergroup",
        "hi group",
    )
    assert message["message_thread_id"] == 4


def test_fake_long_poll_returns_when_an_update_arrives(fake, api):
    results = []
    poller = threading.Thread(
        target=lambda: results.append(api.get_updates(timeout=60)), daemon=True
    )
    poller.start()
    fake.wait_for_pollers(timeout=10)
    fake.queue_text(USER, "late")
    poller.join(30)  # bounded, and well inside the poll's own 60 s
    assert not poller.is_alive(), "the long poll did not return when the update arrived"
    assert [u["message"]["text"] for u in results[0]] == ["late"]


def test_fake_a_second_poller_terminates_the_first(fake):
    results = []
    with BotAPI(fake.token, fake.api_base) as first, BotAPI(fake.token, fake.api_base) as second:

        def poll_first():
            try:
                first.get_updates(timeout=20)
            except TelegramError as err:
                results.append(err)

        thread = threading.Thread(target=poll_first)
        thread.start()
        fake.wait_for_pollers()
        poll_second = threading.Thread(
            target=lambda: results.append(second.get_updates(timeout=20))
        )
        poll_second.start()
        thread.join(timeout=5)
        fake.queue_text(USER, "for the second")
        poll_second.join(timeout=5)
    err, updates = results
    assert (err.error_code, err.description) == (409, POLL_CONFLICT)
    assert len(updates) == 1


def test_fake_webhook_and_poller_conflicts(fake, api):
    fake.webhook_url = "https://example.com/hook"
    err = raises(api.get_updates)
    assert (err.error_code, err.description) == (409, WEBHOOK_CONFLICT)
    assert api.get_webhook_info()["url"] == "https://example.com/hook"
    assert api.delete_webhook() is True
    assert api.get_updates() == []
    fake.poll_conflict = True
    assert raises(api.get_updates).description == POLL_CONFLICT


def test_fake_allowed_updates_persist(fake, api):
    fake.queue_update({"message_reaction": {"chat": {"id": USER}}})  # not sent by default
    api.get_updates(allowed_updates=["message"])
    fake.queue_update({"edited_message": {"text": "x"}})
    fake.queue_text(USER, "kept")
    assert [u["message"]["text"] for u in api.get_updates()] == ["kept"]


# ---------------------------------------------------------------------- fake: harness


def test_fake_records_calls_and_waits_for_them(fake, api):
    thread = threading.Thread(target=api.send_message, args=(USER, "from a thread"))
    thread.start()
    (call,) = fake.wait_for_calls(1, method="sendMessage")
    thread.join()
    assert (call.chat_id, call.ok, call.response["result"]["text"]) == (USER, True, "from a thread")
    assert fake.calls_to("sendMessage", chat_id=USER) == [call]


def test_fake_scripts_apply_in_order_and_wildcard(fake, api):
    fake.fail("*", 500)
    fake.fail("getMe", 400, "Bad Request: first")
    assert raises(api.get_me).description == "Bad Request: first"
    assert raises(api.get_me).error_code == 500
    assert api.get_me()["is_bot"] is True


def test_fake_records_spec_violations():
    with served(rate_limits=False) as (fake, api):
        if not fake.validating:
            pytest.skip("shared/botapi is not beside this checkout")
        err = raises(api._call, "sendMessage", {"chat_id": USER, "text": "x", "txt": 1})
        assert err.error_code == 400 and "unknown_param:txt" in err.description
        raises(api._call, "getUpdates", {"limit": 500})
        assert [v["method"] for v in fake.violations] == ["sendMessage", "getUpdates"]
        with pytest.raises(AssertionError):
            fake.assert_clean()


def test_fake_requires_post_with_json(fake):
    response = requests.get(f"{fake.api_base}/bot{fake.token}/getMe", timeout=5)
    assert response.status_code == 400
    assert fake.violations[0]["errors"][0]["kind"] == "convention"
    assert requests.post(f"{fake.api_base}/nope", timeout=5).status_code == 404


def test_fake_works_without_the_shared_validator(tmp_path):
    missing = tmp_path / "shared" / "botapi" / "validate_payload.py"
    with served(validator_path=missing, rate_limits=False) as (fake, api):
        assert not fake.validating
        api._call("sendMessage", {"chat_id": USER, "text": "x", "txt": 1})
        fake.assert_clean()


def test_validator_knows_drafts_even_from_an_older_spec():
    check = load_validator()
    if check is None:
        pytest.skip("shared/botapi is not beside this checkout")
    assert check("sendMessageDraft", {"chat_id": 1, "draft_id": 2, "text": "x"}) == []
    unknown = [{"kind": "unknown_method", "param": None, "detail": "not in spec"}]
    assert _draft_errors(unknown, {"chat_id": 1, "draft_id": 2, "can_stop": True}) == []
    kinds = [e["kind"] for e in _draft_errors(unknown, {"chat_id": 1, "draft_id": "2", "x": 1})]
    assert kinds == ["wrong_type", "unknown_param"]


def test_fake_close_is_idempotent_and_ends_a_hanging_request():
    fake = FakeBotAPI()
    fake.hang("getMe", seconds=30)
    api = BotAPI(fake.token, fake.api_base, read_timeout=20)
    thread = threading.Thread(target=lambda: pytest.raises(TelegramError, api.get_me))
    thread.start()
    fake.wait_for_calls(1)
    fake.close()
    fake.close()
    thread.join(timeout=15)  # bounded, and well inside the client's 20 s and the hang's 30 s
    api.close()
    assert not thread.is_alive()
