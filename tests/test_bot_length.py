"""Issue 10: an answer the model's length limit cut (finish_reason "length") says so at the
end of its last Telegram message."""

from __future__ import annotations

from hermes_min.agent import Agent
from hermes_min.client import ChatClient
from hermes_min.events import Done, TextDelta
from hermes_min.message import Message
from hermes_min.telegram.botapi import BotAPI
from hermes_min.telegram.pacing import Budgets
from hermes_min.telegram.streamer import LENGTH_CUT, TelegramStreamer
from tests.sse_server import Reply as ModelReply
from tests.sse_server import answer as model_answer
from tests.test_bot_updates import Bot, bot_fixture, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import ALICE, answers


def test_an_answer_cut_by_the_length_limit_says_so_at_its_end(bot: Bot, fake, server):
    server.reply(ModelReply(parts=model_answer("Half of a long", " answer", finish="length")))
    fake.queue_text(ALICE, "write a lot")
    assert bot() == 0
    assert answers(fake, ALICE) == [f"Half of a long answer\n\n{LENGTH_CUT}"]


def test_the_done_event_of_a_length_cut_carries_its_finish_reason(server):
    server.reply(ModelReply(parts=model_answer("Half", finish="length")))
    with ChatClient(server.url, api_key=None, model="m") as client:
        with Agent(client).turn([{"role": "user", "content": "hi"}]) as turn:
            events = list(turn)
    assert isinstance(events[-1], Done) and events[-1].message.finish_reason == "length"


def test_a_long_length_cut_answer_has_the_marker_on_its_last_part(fake):
    text = "word " * 1200  # two messages
    with BotAPI(fake.token, fake.api_base) as api:
        budgets = Budgets(0.02, group_interval=0.02)  # a group's 3 s pacing, shortened
        out = TelegramStreamer(api, -100555, enabled=False, budgets=budgets)
        out.handle(TextDelta(text))
        out.handle(Done(Message(content=text, finish_reason="length")))
        delivery = out.close()
    said = [m.text for m in fake.messages(-100555)]
    assert len(said) == 2 and delivery.complete
    assert said[-1].endswith(LENGTH_CUT) and LENGTH_CUT not in said[0]


def test_a_length_cut_with_no_text_is_still_marked(fake):
    with BotAPI(fake.token, fake.api_base) as api:
        out = TelegramStreamer(api, -100556, enabled=False)
        out.handle(Done(Message(content="", reasoning="thinking...", finish_reason="length")))
        out.close()
    assert [m.text for m in fake.messages(-100556)] == [LENGTH_CUT]
