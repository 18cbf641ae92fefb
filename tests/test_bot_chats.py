"""Issue 11: a persona and per-chat settings, the bot's own commands, groups that behave like
groups, who speaks and what a message replies to, the operator's -v line and `whoami`."""

from __future__ import annotations

import logging

import pytest

from hermes_min.cli import main
from tests.sse_server import Reply as ModelReply
from tests.sse_server import answer
from tests.test_bot_updates import Bot, bot_fixture, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import ALICE, BOB, GROUP, STRANGER, answers

OTHER_GROUP = -100777


def systems(server) -> list[str | None]:
    """The system prompt of each request to the model (None: it had none)."""
    found = []
    for request in server.requests:
        messages = request["json"]["messages"]
        found.append(messages[0]["content"] if messages[0]["role"] == "system" else None)
    return found


def models(server) -> list[str]:
    return [request["json"]["model"] for request in server.requests]


def configure(bot: Bot, telegram: str) -> None:
    bot.configure("  group_mode: mention\n  allowed_chats: [-100123, -100777]\n" + telegram)


# ---------------------------------------------------------------- a persona


def test_the_bot_has_a_persona_and_a_chat_its_own(bot: Bot, fake, server):
    configure(
        bot,
        '  system: "You are Hermes, a helpful bot."\n'
        "  chats:\n"
        f'    {BOB}: {{system: "You are a patient tutor.", model: tutor-7b}}\n',
    )
    server.reply(ModelReply(parts=answer("hi")), ModelReply(parts=answer("hello")))
    fake.queue_text(ALICE, "hi")
    assert bot() == 0
    fake.queue_text(BOB, "hello")
    assert bot() == 0
    assert systems(server) == ["You are Hermes, a helpful bot.", "You are a patient tutor."]
    assert models(server) == ["m", "tutor-7b"]


def test_system_shows_sets_and_resets_this_chats_prompt(bot: Bot, fake, server):
    configure(bot, '  system: "Default persona."\n')
    server.reply(*[ModelReply(parts=answer(f"answer {i}")) for i in range(3)])
    fake.queue_text(ALICE, "/system")
    fake.queue_text(ALICE, "/system Be terse. Answer in five words.")
    fake.queue_text(ALICE, "first")
    assert bot() == 0
    fake.queue_text(ALICE, "/system")
    fake.queue_text(ALICE, "/system -")
    fake.queue_text(ALICE, "second")
    assert bot() == 0
    said = answers(fake, ALICE)
    assert said[0] == "System prompt:\nDefault persona."
    assert said[1] == "System prompt set for this chat."
    assert said[3] == "System prompt:\nBe terse. Answer in five words."
    assert said[4] == "System prompt reset to the default."
    assert systems(server) == ["Be terse. Answer in five words.", "Default persona."]
    # The commands never reached the model.
    assert all(
        not m["content"].startswith("/") for r in server.requests for m in r["json"]["messages"]
    )


def test_model_switches_among_the_offered_names_only(bot: Bot, fake, server):
    configure(bot, "  models: [small, large]\n")
    server.reply(ModelReply(parts=answer("a")), ModelReply(parts=answer("b")))
    fake.queue_text(ALICE, "/model")
    fake.queue_text(ALICE, "/model huge")
    fake.queue_text(ALICE, "/model large")
    fake.queue_text(ALICE, "question")
    assert bot() == 0
    fake.queue_text(ALICE, "again")  # the choice is kept across runs
    assert bot() == 0
    said = answers(fake, ALICE)
    assert said[0] == "Model: m. Available: small, large."
    assert said[1].startswith("There is no model 'huge' here")
    assert said[2] == "Now using large."
    assert models(server) == ["large", "large"]
    assert fake.commands == {}  # setup never ran: a cron run does not touch the menu


def test_without_a_list_model_says_it_is_off_and_help_leaves_it_out(bot: Bot, fake, server):
    fake.queue_text(ALICE, "/model large")
    fake.queue_text(ALICE, "/help")
    assert bot() == 0
    off, help_ = answers(fake, ALICE)
    assert "switching is off" in off and not server.requests
    assert "/new" in help_ and "/system" in help_ and "/model" not in help_
    assert "/start" in help_  # it works (Telegram sends it first), so it is listed


def test_model_names_the_server_s_model_when_none_is_configured(bot: Bot, fake, server):
    bot.config.write_text(bot.config.read_text().replace("  model: m\n", ""))
    listing = ModelReply(
        parts=[b'{"data": [{"id": "local-llm"}]}'],
        content_type="application/json",
        framing="length",
    )
    server.reply(listing)
    fake.queue_text(ALICE, "/model")
    assert bot() == 0
    assert answers(fake, ALICE) == ["This chat uses local-llm; switching is off."]


def test_help_lists_model_when_models_are_offered(bot: Bot, fake, server):
    configure(bot, "  models: [small]\n")
    fake.queue_text(ALICE, "/help")
    assert bot() == 0
    assert "/model" in answers(fake, ALICE)[0]


def test_setup_registers_exactly_the_commands_that_work(bot: Bot, fake, capsys):
    configure(bot, "  models: [small]\n")
    assert main(["telegram", "setup", "--config", str(bot.config)]) == 0
    assert list(fake.commands.values()) == [["new", "system", "model", "help"]]
    assert "registered 4 commands" in capsys.readouterr().out


def test_a_long_poll_registers_its_commands_at_the_start(bot: Bot, fake, server):
    argv = ["telegram", "poll", "--max-seconds", "0", "--config", str(bot.config)]
    assert main(argv) == 0
    assert list(fake.commands.values()) == [["new", "system", "help"]]


# ---------------------------------------------------------------- groups behave like groups


@pytest.mark.parametrize("command", ["/new@hermes_test_bot", "/new", "/NEW@Hermes_Test_Bot"])
def test_a_command_for_this_bot_counts_in_a_group(bot: Bot, fake, server, command):
    configure(bot, "")
    fake.queue_text(ALICE, command, chat_id=GROUP)
    assert bot() == 0
    assert answers(fake, GROUP) == ["Starting a new conversation."] and not server.requests


def test_a_command_for_another_bot_is_ignored_in_a_group(bot: Bot, fake, server):
    configure(bot, "")
    fake.queue_text(ALICE, "/new@other_bot", chat_id=GROUP)
    fake.queue_text(ALICE, "/help@other_bot", chat_id=GROUP)
    fake.queue_text(ALICE, "/weather", chat_id=GROUP)  # another bot's command, unaddressed
    assert bot() == 0
    assert answers(fake, GROUP) == [] and not server.requests and not fake.pending_updates


def test_new_in_a_group_resets_that_groups_conversation_only(bot: Bot, fake, server):
    configure(bot, "")
    server.reply(*[ModelReply(parts=answer(f"a{i}")) for i in range(3)])
    fake.queue_text(ALICE, "@hermes_test_bot one", chat_id=GROUP)
    fake.queue_text(ALICE, "@hermes_test_bot one", chat_id=OTHER_GROUP)
    assert bot() == 0
    fake.queue_text(ALICE, "/new@hermes_test_bot", chat_id=GROUP)
    fake.queue_text(ALICE, "@hermes_test_bot two", chat_id=GROUP)
    assert bot() == 0
    last = server.requests[-1]["json"]["messages"]
    assert [m["content"] for m in last] == ["Test: two"]  # the group started over


# ---------------------------------------------------------------- who speaks, what it replies to


def group_message(update_id_text: str, *, first: str, last: str = "", reply: dict | None = None):
    message = {
        "message_id": 50,
        "date": 0,
        "chat": {"id": GROUP, "type": "supergroup", "title": "Team"},
        "from": {"id": ALICE, "is_bot": False, "first_name": first, "last_name": last},
        "text": update_id_text,
    }
    if reply is not None:
        message["reply_to_message"] = reply
    return {"message": message}


def test_in_a_group_the_model_sees_who_speaks(bot: Bot, fake, server):
    configure(bot, "")
    server.reply(ModelReply(parts=answer("hi Ann")))
    fake.queue_update(group_message("@hermes_test_bot hello", first="Ann", last="Lee"))
    assert bot() == 0
    assert server.requests[0]["json"]["messages"][-1]["content"] == "Ann Lee: hello"


def test_a_reply_carries_the_replied_to_text_in_private_too(bot: Bot, fake, server):
    server.reply(ModelReply(parts=answer("Bonjour")))
    original = {
        "message_id": 7,
        "date": 0,
        "chat": {"id": ALICE, "type": "private", "first_name": "Ann"},
        "from": {"id": BOB, "is_bot": False, "first_name": "Bob"},
        "text": "Good morning, everyone",
    }
    update = group_message("translate this", first="Ann", reply=original)
    update["message"]["chat"] = {"id": ALICE, "type": "private", "first_name": "Ann"}
    fake.queue_update(update)
    assert bot() == 0
    asked = server.requests[0]["json"]["messages"][-1]["content"]
    assert "Good morning, everyone" in asked and asked.endswith("translate this")
    assert "Bob" in asked and not asked.startswith("Ann")  # private: no speaker prefix


def test_a_long_replied_to_text_is_capped(bot: Bot, fake, server):
    server.reply(ModelReply(parts=answer("ok")))
    original = {"message_id": 7, "date": 0, "chat": {"id": ALICE, "type": "private"}}
    original["text"] = "word " * 1000
    update = group_message("summarise", first="Ann", reply=original)
    update["message"]["chat"] = {"id": ALICE, "type": "private"}
    fake.queue_update(update)
    assert bot() == 0
    asked = server.requests[0]["json"]["messages"][-1]["content"]
    assert 300 < len(asked) < 400 and asked.endswith("summarise")


# ---------------------------------------------------------------- for the operator


def test_verbose_says_one_line_per_answer_and_never_its_text(bot: Bot, fake, server, caplog):
    usage = {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}
    server.reply(ModelReply(parts=answer("a secret answer", usage=usage)))
    fake.queue_text(ALICE, "a secret question")
    with caplog.at_level(logging.INFO, logger="hermes_min"):
        assert bot("-v") == 0
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hermes_min.telegram")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"chat {ALICE}: 21 tokens in, 7 out, ")
    assert lines[0].endswith(" s, answered")
    assert "secret" not in caplog.text


@pytest.mark.parametrize(
    "reply, outcome",
    [
        (  # a refusal that echoes the prompt
            ModelReply(
                parts=[b'{"error": {"message": "Invalid prompt: a secret question"}}'],
                status=400,
                content_type="application/json",
                framing="length",
            ),
            "not answered (http_error 400)",
        ),
        (  # an event whose JSON breaks inside the answer's text
            ModelReply(parts=[b'data: {"choices":[{"delta":{"content":"a secret answer\n\n']),
            "not answered (invalid_json)",
        ),
    ],
    ids=["refused", "broken"],
)
def test_verbose_says_one_line_for_a_failed_answer_and_never_its_text(
    bot: Bot, fake, server, caplog, reply, outcome
):
    server.reply(reply)
    fake.queue_text(ALICE, "a secret question")
    with caplog.at_level(logging.INFO, logger="hermes_min.telegram"):
        assert bot("-v") == 0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].endswith(f" s, {outcome}"), lines
    assert "secret" not in caplog.text


def test_whoami_says_per_chat_whether_it_answers_and_why(bot: Bot, fake, capsys):
    configure(bot, "")
    fake.queue_text(ALICE, "hi")
    fake.queue_text(STRANGER, "hello")
    fake.queue_text(STRANGER, "hey all", chat_id=GROUP)
    assert main(["telegram", "whoami", "--config", str(bot.config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(f"user {ALICE}" in line and "telegram.allowed_users" in line for line in out)
    assert any(
        f"user {STRANGER}" in line
        and "private" in line
        and line.split(": ", 1)[1].startswith("not")
        for line in out
    )
    assert any(f"chat {GROUP}: answered" in line and "mentioned" in line for line in out)
