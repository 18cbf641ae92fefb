"""The Telegram streamer against the fake Bot API: previews, finals, limits, failures."""

from __future__ import annotations

import logging
import threading

import pytest

from hermes_min.errors import StreamError
from hermes_min.events import Done, Failed, TextDelta
from hermes_min.message import Message, ToolCall
from hermes_min.telegram.botapi import BotAPI
from hermes_min.telegram.pacing import Budgets
from hermes_min.telegram.streamer import TelegramStreamer
from tests.fake_botapi import FakeBotAPI, FakeClock

USER, GROUP = 4242, -100777
FAST = 0.02  # seconds between calls to one chat, on both sides, so tests stay quick


@pytest.fixture
def fake():
    with FakeBotAPI(per_chat_interval=FAST, per_chat_burst=3, group_window=1.0) as server:
        yield server
        server.assert_clean()  # every payload matched the Bot API spec


@pytest.fixture
def api(fake):
    with BotAPI(fake.token, fake.api_base) as client:
        yield client


def fast_budgets():
    return Budgets(FAST, group_interval=FAST, group_window=1.0)


def streamer(api, chat=USER, **kwargs):
    kwargs.setdefault("budgets", fast_budgets())
    kwargs.setdefault("edit_interval", FAST)
    kwargs.setdefault("buffer_threshold", 10)
    return TelegramStreamer(api, chat, **kwargs)


def play(fake, out, pieces, method):
    """Feed pieces, waiting after each until one more preview call reached the fake.

    With edits, the first preview is a sendMessage and later ones are edits.
    """
    for piece in pieces:
        if method == "edits":
            kind = "editMessageText" if fake.calls_to("sendMessage") else "sendMessage"
        else:
            kind = method
        before = len(fake.calls_to(kind))
        out.handle(TextDelta(piece))
        fake.wait_for_calls(before + 1, kind)


def finish(out, text):
    out.handle(Done(Message(content=text, finish_reason="stop")))
    return out.close()


def visible(fake, chat):
    return [m.text for m in fake.messages(chat) if m.from_bot]


def test_private_chat_streams_by_draft_and_ends_with_a_real_message(fake, api):
    out = streamer(api)
    play(fake, out, ["Hello there, ", "this is a streamed ", "answer in a DM."], "sendMessageDraft")
    delivery = finish(out, "Hello there, this is a streamed answer in a DM.")
    drafts = fake.calls_to("sendMessageDraft")
    assert len({c.payload["draft_id"] for c in drafts}) == 1 and drafts[0].payload["draft_id"]
    assert all(c.payload["text"].endswith(" \u2589") for c in drafts)
    assert not fake.calls_to("editMessageText")
    assert visible(fake, USER) == ["Hello there, this is a streamed answer in a DM."]
    assert delivery.complete and delivery.already_sent
    assert fake.draft(USER) is None  # the real message replaced the draft


def test_group_streams_by_edits_and_finishes_with_a_formatting_edit(fake, api):
    out = streamer(api, GROUP)
    play(fake, out, ["First words **of** the ", "answer, growing ", "longer and longer."], "edits")
    delivery = finish(out, "First words **of** the answer, growing longer and longer.")
    assert not fake.calls_to("sendMessageDraft")
    assert len(fake.calls_to("sendMessage")) == 1
    last = fake.calls_to("editMessageText")[-1]
    assert last.payload["parse_mode"] == "MarkdownV2"
    [message] = fake.messages(GROUP)
    assert message.text == "First words of the answer, growing longer and longer."
    assert [e["type"] for e in message.entities] == ["bold"]
    assert delivery.complete


def test_auto_falls_back_to_edits_once_when_drafts_are_refused(fake, api):
    fake.fail("sendMessageDraft", 400, "Bad Request: method is not available")
    out = streamer(api)
    out.handle(TextDelta("a first piece of text"))
    fake.wait_for_calls(1, "sendMessageDraft")
    play(fake, out, [" and more text after"], "sendMessage")
    play(fake, out, [" and even more text"], "editMessageText")
    finish(out, "a first piece of text and more text after and even more text")
    assert len(fake.calls_to("sendMessageDraft")) == 1
    assert visible(fake, USER) == ["a first piece of text and more text after and even more text"]


def test_429_pauses_the_chat_for_retry_after_and_never_leaves_drafts(fake, api):
    out = streamer(api)
    play(fake, out, ["some text to show"], "sendMessageDraft")
    fake.fail("sendMessageDraft", 429, "Too Many Requests: retry after 1", retry_after=1)
    play(fake, out, [" more text arriving"], "sendMessageDraft")
    limited = fake.calls_to("sendMessageDraft")[-1]
    out.handle(TextDelta(" and the rest of it"))
    delivery = finish(out, "some text to show more text arriving and the rest of it")
    after = [c for c in fake.calls if c.time > limited.time]
    assert after and after[0].time - limited.time >= 1.0  # nothing to the chat meanwhile
    assert not fake.calls_to("editMessageText") and not fake.calls_to("sendMessage")[:-1]
    assert delivery.complete


def test_identical_frames_are_not_sent(fake, api):
    out = streamer(api, GROUP, buffer_threshold=1)
    play(fake, out, ["abcdefghij"], "sendMessage")
    out.handle(TextDelta("   "))  # renders to the same preview: trailing space is trimmed
    out.handle(TextDelta("\n"))
    finish(out, "abcdefghij   \n")
    edits = fake.calls_to("editMessageText")
    assert len(edits) == 1 and edits[0].payload["parse_mode"] == "MarkdownV2"  # the final only


def test_ten_thousand_characters_arrive_whole_in_order(fake, api):
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(30)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) > 9000
    out = streamer(api, GROUP)
    play(fake, out, [text[:3000], text[3000:6000]], "edits")
    delivery = finish(out, text)
    shown = visible(fake, GROUP)
    assert len(shown) >= 3 and delivery.parts_sent == len(shown) == delivery.parts_total
    assert "".join(shown).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )
    messages = fake.messages(GROUP)
    assert all(m.reply_to == prev.message_id for prev, m in zip(messages, messages[1:]))


def test_forum_topic_gets_thread_id_on_every_call(fake, api):
    fake.add_topic(GROUP, 77)
    out = streamer(api, GROUP, thread_id=77)
    play(fake, out, ["typing then text in a topic"], "sendMessage")
    finish(out, "typing then text in a topic")
    for call in fake.calls:
        if call.method in ("sendMessage", "sendChatAction", "sendMessageDraft"):
            assert call.payload["message_thread_id"] == 77
    assert [m.message_thread_id for m in fake.messages(GROUP)] == [77]


def test_stale_topic_is_retried_once_without_it(fake, api):
    out = streamer(api, GROUP, thread_id=99, enabled=False)
    delivery = finish(out, "answer")
    assert visible(fake, GROUP) == ["answer"] and delivery.complete
    assert any("topic 99" in note for note in delivery.notes)


@pytest.mark.parametrize(
    "markdown, seen",
    [
        ("use snake_case_names here", "use snake_case_names here"),
        ("2*3*4 = 24", "2*3*4 = 24"),
        ("an **unclosed bold", "an **unclosed bold"),
        ("code: `a < b && c > d`", "code: a < b && c > d"),
        ("```python\nif a < b and c & d:\n    s = `x`\n```", "if a < b and c & d:\n    s = `x`"),
        ("[docs](https://example.com/a_(b)) and a.b!", "docs and a.b!"),
    ],
)
@pytest.mark.parametrize("mode", ["MarkdownV2", "HTML"])
def test_markdown_corner_cases_reach_the_chat_formatted(fake, api, markdown, seen, mode):
    delivery = finish(streamer(api, GROUP, enabled=False, parse_mode=mode), markdown)
    assert visible(fake, GROUP) == [seen] and delivery.complete
    assert fake.calls_to("sendMessage")[-1].payload["parse_mode"] == mode


def test_rejected_formatting_is_sent_once_as_plain_text(fake, api):
    fake.fail("sendMessage", 400, "Bad Request: can't parse entities: Can't find end of Bold")
    delivery = finish(streamer(api, GROUP, enabled=False), "**bold** and `code`")
    sends = fake.calls_to("sendMessage")
    assert len(sends) == 2 and "parse_mode" not in sends[1].payload
    assert visible(fake, GROUP) == ["bold and code"] and delivery.complete


def test_interrupted_answer_keeps_what_was_shown_and_says_it_was_cut(fake, api):
    out = streamer(api, GROUP)
    play(fake, out, ["half of an answer"], "sendMessage")
    error = StreamError("interrupted", "interrupted", partial=Message(content="half of an answer"))
    out.handle(Failed(error))
    delivery = out.close()
    [text] = visible(fake, GROUP)
    assert text.startswith("half of an answer") and "cut off: interrupted" in text
    assert delivery.already_sent and not delivery.complete
    assert "cut off" in delivery.describe()


def test_blocked_chat_stops_at_once_without_retries(fake, api):
    fake.block_chat(USER)
    out = streamer(api)
    out.handle(TextDelta("some text that will never arrive"))
    fake.wait_for_calls(1)
    delivery = finish(out, "some text that will never arrive")
    assert len(fake.calls) == 1 and not delivery.already_sent
    assert "blocked" in delivery.describe()


def test_group_upgrade_is_followed_once(fake, api):
    fake.migrate_chat(GROUP, GROUP - 1)
    delivery = finish(streamer(api, GROUP, enabled=False), "moved answer")
    assert visible(fake, GROUP - 1) == ["moved answer"] and delivery.complete
    assert any(str(GROUP - 1) in note for note in delivery.notes)


def test_lost_preview_continues_in_a_new_message(fake, api):
    out = streamer(api, GROUP)
    play(fake, out, ["a preview message"], "sendMessage")
    fake.fail("editMessageText", 400, "Bad Request: message to edit not found", times=5)
    delivery = finish(out, "a preview message, and its end")
    assert visible(fake, GROUP)[-1] == "a preview message, and its end" and delivery.complete


def test_transient_errors_on_the_final_are_retried(fake, api, monkeypatch):
    monkeypatch.setattr(TelegramStreamer, "RETRY_BACKOFF", 0.01)
    fake.fail("sendMessage", 502, times=2)
    delivery = finish(streamer(api, GROUP, enabled=False), "eventually")
    assert visible(fake, GROUP) == ["eventually"] and delivery.complete


def test_typing_until_the_first_visible_text(fake, api):
    out = streamer(api, GROUP, buffer_threshold=1000)
    fake.wait_for_calls(1, "sendChatAction")
    out.handle(TextDelta("short"))
    finish(out, "short")
    assert fake.chat_actions(GROUP)[0] == "typing"
    assert fake.calls.index(fake.calls_to("sendChatAction")[-1]) < fake.calls.index(
        fake.calls_to("sendMessage")[0]
    )


def test_streaming_disabled_sends_one_message(fake, api):
    out = streamer(api, enabled=False)
    out.handle(TextDelta("x" * 500))
    delivery = finish(out, "x" * 500)
    assert not fake.calls_to("sendMessageDraft") and not fake.calls_to("editMessageText")
    assert len(fake.calls_to("sendMessage")) == 1 and delivery.complete


def test_tool_only_answer_says_so(fake, api):
    out = streamer(api, GROUP, enabled=False)
    out.handle(
        Done(Message(tool_calls=[ToolCall("c", "search", "{}")], finish_reason="tool_calls"))
    )
    out.close()
    assert visible(fake, GROUP) == ["[the model asked for tools: search]"]


def test_one_budget_per_chat_spaces_every_call(fake, api):
    interval = 0.2
    budgets = Budgets(interval, group_interval=interval, group_window=1.0)
    out = TelegramStreamer(api, GROUP, edit_interval=interval, buffer_threshold=5, budgets=budgets)
    for piece in ["one two ", "three four ", "five six "]:
        out.handle(TextDelta(piece))
        fake.wait_for_calls(len(fake.calls) + 1)
    finish(out, "one two three four five six")
    calls = fake.calls
    assert len(calls) >= 4 and {c.method for c in calls} >= {"sendMessage", "editMessageText"}
    # Server-side times of neighbours prove nothing under load: a call held up on its way in
    # leaves a short gap to the next. Two apart they do: the streamer sends one call at a
    # time, so call k was answered before call k+1 was paid for, and call k+2 waited out the
    # budget after that payment. An unpaced streamer sends all of them milliseconds apart.
    for before, paid, after in zip(calls, calls[1:], calls[2:]):
        share = 0.5 if paid.method == "sendChatAction" else 1.0  # typing costs half
        gap = after.time - before.time
        assert gap >= share * interval - 1e-9, (paid.method, gap)  # 1e-9: float rounding


def test_a_chat_budget_on_an_injected_clock():
    clock = FakeClock()
    budgets = Budgets(1.0, group_interval=3.0, group_limit=2, group_window=10.0, clock=clock)
    chat = budgets.for_chat(USER)
    assert budgets.for_chat(USER) is chat and chat.ready()
    chat.spend()
    assert chat.ready_at() == clock.now + 1.0 and not chat.ready()
    clock.advance(0.5)
    assert not chat.ready()
    clock.advance(0.5)
    assert chat.ready()
    chat.spend(0.5)  # a chat action: the next call may follow after half the interval
    assert chat.ready_at() == clock.now + 0.5
    clock.advance(0.5)
    chat.pause(4.0)  # a 429: exactly its retry_after, from now
    assert chat.ready_at() == clock.now + 4.0
    clock.advance(4.0)
    assert chat.ready()

    group = budgets.for_chat(GROUP)
    assert group.interval == 3.0  # the group interval, not the chat one
    start = clock.now
    group.spend()
    clock.advance(3.0)
    assert group.ready()
    group.spend(0.5)  # a chat action is no message: it does not count towards the window
    clock.advance(1.5)
    assert group.ready()
    group.spend()  # the window's second message: a third waits until the first leaves it
    assert group.ready_at() == start + 10.0
    clock.advance(5.0)
    assert not group.ready()
    clock.advance(0.5)
    assert group.ready()


def test_groups_are_paced_at_twenty_a_minute_by_default():
    budgets = Budgets(1.0)
    assert budgets.for_chat(GROUP).interval == 3.0 and budgets.for_chat(USER).interval == 1.0


def test_the_token_never_appears_in_notes_errors_or_logs(fake, caplog):
    fake.block_chat(USER)
    with caplog.at_level(logging.DEBUG), BotAPI(fake.token, fake.api_base) as api:
        delivery = finish(streamer(api), "text")
    secret = fake.token.split(":")[1]
    assert secret not in delivery.describe() and secret not in repr(delivery.error)
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_close_is_idempotent(fake, api):
    out = streamer(api, GROUP, enabled=False)
    first = finish(out, "once")
    assert out.close() is first and visible(fake, GROUP) == ["once"]
    assert not out._thread_obj.is_alive()  # nothing can be sent after close
    assert len(fake.calls_to("sendMessage")) == 1


def test_each_segment_after_a_tool_call_is_its_own_message_and_draft(fake, api):
    from hermes_min.events import SegmentBreak, ToolProgress

    out = streamer(api, tool_progress=True)
    play(fake, out, ["Let me check the weather."], "sendMessageDraft")
    first_draft = fake.calls_to("sendMessageDraft")[-1].payload["draft_id"]
    out.handle(SegmentBreak())
    out.handle(ToolProgress("weather", "c1"))
    out.handle(ToolProgress("weather", "c1", ok=True))
    play(fake, out, ["It is sunny in Paris today."], "sendMessageDraft")
    second_draft = fake.calls_to("sendMessageDraft")[-1].payload["draft_id"]
    delivery = finish(out, "It is sunny in Paris today.")
    assert first_draft != second_draft and second_draft
    assert visible(fake, USER) == [
        "Let me check the weather.",
        "\u2699 weather \u2713",  # one message per segment, edited as the tool ended
        "It is sunny in Paris today.",
    ]
    assert delivery.complete and delivery.parts_sent == 2


def test_an_unchanged_draft_is_sent_again_before_it_expires(fake, api, monkeypatch):
    monkeypatch.setattr(TelegramStreamer, "DRAFT_KEEPALIVE", 0.2)
    out = streamer(api)
    play(fake, out, ["a draft that stalls"], "sendMessageDraft")
    again = fake.wait_for_calls(2, "sendMessageDraft")  # no new text: a keep-alive
    assert again[0].payload == again[1].payload
    finish(out, "a draft that stalls")


def test_typing_is_refreshed_while_nothing_is_visible(fake, api, monkeypatch):
    monkeypatch.setattr(TelegramStreamer, "TYPING_EVERY", 0.1)
    out = streamer(api, GROUP)
    fake.wait_for_calls(3, "sendChatAction")
    finish(out, "finally")
    assert fake.chat_actions(GROUP)[:3] == ["typing"] * 3


def test_a_429_on_the_final_waits_exactly_and_still_delivers(fake, api):
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    delivery = finish(streamer(api, GROUP, enabled=False), "patience")
    first, second = fake.calls_to("sendMessage")
    # A lower bound that load cannot break: the pause starts when the 429 arrives, which is
    # after the fake stamped the first call, and the second is stamped after the pause.
    assert second.time - first.time >= 1.0 and delivery.complete


def test_a_429_longer_than_the_final_deadline_fails_at_once(fake, api, monkeypatch):
    from hermes_min.telegram import streamer as telegram

    monkeypatch.setattr(telegram, "MAX_FINAL_WAIT", 2.0)
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 60", retry_after=60)
    # The streamer's clock never moves: one that waited for the 429, or for its deadline,
    # would wait for ever. Returning at all shows it gave up at once.
    frozen = Budgets(0.0, group_interval=0.0, clock=FakeClock())
    out = streamer(api, GROUP, enabled=False, budgets=frozen)
    done = []
    closing = threading.Thread(target=lambda: done.append(finish(out, "never")), daemon=True)
    closing.start()
    closing.join(30)  # bounded: a streamer that waits never returns
    assert done, "the streamer waited for a 429 longer than its deadline"
    delivery = done[0]
    assert not delivery.already_sent and "wait 60 s" in delivery.describe()


def test_ten_thousand_characters_by_drafts(fake, api):
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 60 for i in range(30))
    out = streamer(api)
    play(fake, out, [text[:4000], text[4000:8000]], "sendMessageDraft")
    assert all(len(c.payload["text"]) <= 4096 for c in fake.calls_to("sendMessageDraft"))
    delivery = finish(out, text)
    shown = visible(fake, USER)
    assert len(shown) >= 3 and delivery.complete
    assert "".join(shown).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


def test_a_lost_reply_to_the_final_is_never_resent(fake, api):
    fake.drop_connection("sendMessage")
    delivery = finish(streamer(api, GROUP, enabled=False), "maybe posted")
    assert len(fake.calls_to("sendMessage")) == 1  # sending again could post it twice
    assert not delivery.already_sent and "may or may not be in the chat" in delivery.describe()


def test_a_failed_typing_action_does_not_leave_drafts(fake, api):
    fake.fail("sendChatAction", 500)
    out = streamer(api)
    fake.wait_for_calls(1, "sendChatAction")
    play(fake, out, ["text after a failed typing action"], "sendMessageDraft")
    finish(out, "text after a failed typing action")
    assert not fake.calls_to("editMessageText")


def test_model_errors_reach_the_chat_as_a_short_reason_only(fake, api):
    detail = "cannot connect to http://10.0.0.7:8080/v1/chat/completions: connection refused"
    out = streamer(api, GROUP)
    out.handle(Failed(StreamError("connection", detail, partial=Message())))
    delivery = out.close()
    assert visible(fake, GROUP) == ["[no answer: the model could not be reached]"]
    assert detail in delivery.describe() and not delivery.complete


def test_a_wrong_token_stops_at_once(fake):
    with BotAPI("999:wrong-token-abcdefghijklmnopqrstuvwx", fake.api_base) as bad:
        out = streamer(bad)
        out.handle(TextDelta("some text"))
        delivery = finish(out, "some text")
    assert len(fake.calls) == 1 and fake.calls[0].status == 401
    assert "401" in delivery.describe() and out.stopped


class _CutStream:
    """A stream the user interrupts after its first piece of text."""

    def __init__(self):
        self.interrupted = False

    def __iter__(self):
        yield TextDelta("the first half")
        raise KeyboardInterrupt

    def interrupt(self):
        self.interrupted = True

    def result(self):
        raise StreamError("interrupted", "interrupted", partial=Message(content="the first half"))


def test_ctrl_c_delivers_the_partial_answer_marked_as_cut(fake, api):
    from hermes_min.telegram.streamer import stream_into

    cut = _CutStream()
    out = streamer(api, GROUP)
    with pytest.raises(KeyboardInterrupt):
        stream_into(cut, out)
    assert cut.interrupted
    assert visible(fake, GROUP)[-1] == "the first half\n\n[answer cut off: interrupted]"
