"""Bounded history: the oldest whole turns go first, tool calls keep their results, the
system prompt and the turn in progress stay, and a "context too long" refusal is retried once."""

from __future__ import annotations

import json

from hermes_min import ChatClient
from hermes_min.agent import Agent
from hermes_min.context import TokenEstimate, fit, prompt_budget
from tests.sse_server import Reply, answer

SYSTEM = {"role": "system", "content": "be brief"}


def turn(number: int, size: int = 400, tools: bool = False) -> list[dict]:
    """One turn: a question, maybe a tool call and its result, an answer."""
    messages = [{"role": "user", "content": f"q{number} " + "x" * size}]
    if tools:
        call = {
            "id": f"c{number}",
            "type": "function",
            "function": {"name": "f", "arguments": "{}"},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{number}", "content": "r" * size})
    messages.append({"role": "assistant", "content": f"a{number} " + "y" * size})
    return messages


def history(turns: int, **kwargs) -> list[dict]:
    return [SYSTEM, *[m for n in range(turns) for m in turn(n, **kwargs)]]


def test_nothing_is_left_out_when_it_fits():
    messages = history(3)
    assert fit(messages, 10_000, TokenEstimate(), keep_last=0) == messages


def test_the_oldest_whole_turns_go_first_and_the_system_prompt_stays():
    messages = history(10) + [{"role": "user", "content": "now"}]
    kept = fit(messages, 1000, TokenEstimate(), keep_last=1)
    assert kept[0] == SYSTEM and kept[-1] == {"role": "user", "content": "now"}
    assert TokenEstimate().tokens(kept) <= 1000 < TokenEstimate().tokens(messages)
    users = [int(m["content"][1:].split()[0]) for m in kept[:-1] if m["role"] == "user"]
    assert users == list(range(users[0], 10)) and users[0] > 0  # the newest turns, in order
    assert kept[1]["role"] == "user"  # a turn is never cut in the middle


def test_a_tool_call_never_loses_its_result():
    messages = history(8, tools=True) + [{"role": "user", "content": "now"}]
    kept = fit(messages, 900, TokenEstimate(), keep_last=1)
    calls = {c["id"] for m in kept for c in m.get("tool_calls") or ()}
    results = {m["tool_call_id"] for m in kept if m["role"] == "tool"}
    assert calls == results and calls  # pairs stay together, and some survived


def test_the_turn_in_progress_always_stays_even_when_too_long():
    current = turn(99, size=50_000)
    kept = fit(history(3) + current, 100, TokenEstimate(), keep_last=len(current))
    assert kept == [SYSTEM, *current]


def test_no_budget_sends_everything():
    messages = history(50)
    assert (
        prompt_budget(0) is None and fit(messages, None, TokenEstimate(), keep_last=1) == messages
    )
    assert prompt_budget(8192) == 6144  # a quarter stays free for the answer


def test_the_estimate_learns_from_the_servers_count():
    estimate = TokenEstimate()
    messages = [{"role": "user", "content": "字" * 1000}]  # CJK: about a token a character
    estimate.calibrate(messages, 1004)
    assert estimate.tokens(messages) == 1004
    estimate.calibrate(messages, True)  # not a count: ignored
    estimate.calibrate(messages, 2)  # nonsense: ignored
    assert estimate.tokens(messages) == 1004
    estimate.calibrate([{"role": "user", "content": "x"}], 10**9)  # clamped, not absurd
    assert estimate.chars_per_token == 0.5


REFUSAL = Reply(
    parts=[
        json.dumps(
            {
                "error": {
                    "code": 400,
                    "message": "request (9000 tokens) exceeds the available context size",
                    "type": "exceed_context_size_error",
                }
            }
        ).encode()
    ],
    status=400,
    content_type="application/json",
    framing="length",
)


def test_the_agent_sends_a_trimmed_history(server):
    server.reply(Reply(parts=answer("ok")))
    agent = Agent(ChatClient(server.url, None, "m", max_retries=0), context_tokens=2000)
    question = {"role": "user", "content": "latest"}
    assert agent.turn([*history(20), question]).result().content == "ok"
    sent = server.requests[0]["json"]["messages"]
    assert sent[0] == SYSTEM and sent[-1] == question and len(sent) < 42


def test_a_context_refusal_is_retried_once_with_a_harder_trim(server):
    server.reply(REFUSAL, Reply(parts=answer("fits now")))
    agent = Agent(ChatClient(server.url, None, "m", max_retries=0), context_tokens=0)
    question = {"role": "user", "content": "latest"}
    assert agent.turn([*history(20), question]).result().content == "fits now"
    first, second = (r["json"]["messages"] for r in server.requests)
    assert len(second) < len(first) and second[0] == SYSTEM and second[-1] == question


def test_a_second_refusal_reaches_the_user(server):
    server.reply(REFUSAL, REFUSAL, Reply(parts=answer("never asked")))
    agent = Agent(ChatClient(server.url, None, "m", max_retries=0))
    turn_ = agent.turn([*history(4), {"role": "user", "content": "latest"}])
    try:
        turn_.result()
        raise AssertionError("the refusal was swallowed")
    except Exception as error:  # noqa: BLE001 - the StreamError the user is shown
        assert "context size" in str(error)
    assert len(server.requests) == 2
