"""The agent over the local SSE server: tool loops, think tags, fallback, interrupts."""

from __future__ import annotations

import json
import threading

import pytest

from hermes_min import ChatClient, StreamError
from hermes_min.agent import Agent
from hermes_min.events import (
    Done,
    Failed,
    ReasoningDelta,
    SegmentBreak,
    TextDelta,
    ToolCallStarted,
    ToolProgress,
)
from hermes_min.tools import tool
from tests.sse_server import Reply, SSEServer, answer, chunk, free_port, sse

USER = [{"role": "user", "content": "What is the weather in Paris and Rome?"}]


def calls_reply(*calls, text=None):
    """A response that asks for tools: (id, name, arguments) each, at indexes 0, 1, ..."""
    chunks = [chunk(text)] if text else []
    for index, (call_id, name, arguments) in enumerate(calls):
        fragment = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        chunks.append(chunk(tool_calls=[fragment]))
    chunks.append(chunk(finish="tool_calls"))
    return Reply(parts=[sse(*chunks)])


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return {"Paris": "sunny, 21 C", "Rome": "cloudy, 18 C"}.get(city, "unknown")


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


def agent_for(server, **kwargs):
    client = ChatClient(server.url, None, "m", max_retries=0)
    kwargs.setdefault("tools", [weather, explode])
    return Agent(client, **kwargs)


def run(agent, messages=USER):
    turn = agent.turn(messages)
    events = list(turn)
    return turn, events


def texts(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_one_tool_call_then_the_answer(server):
    server.reply(
        calls_reply(("c1", "weather", '{"city": "Paris"}'), text="Let me check."),
        Reply(parts=answer("Paris is sunny.")),
    )
    turn, events = run(agent_for(server))
    kinds = [type(e) for e in events]
    assert kinds == [
        TextDelta,
        ToolCallStarted,
        SegmentBreak,
        ToolProgress,
        ToolProgress,
        TextDelta,
        Done,
    ]
    assert texts(events) == "Let me check.Paris is sunny."
    assert events[-1].message.content == "Paris is sunny." and turn.completed
    second = server.requests[1]["json"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "weather"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "sunny, 21 C",
    }
    assert [t["function"]["name"] for t in second["tools"]] == ["weather", "explode"]
    assert [m["role"] for m in turn.record()] == ["assistant", "tool", "assistant"]


def test_parallel_calls_each_get_their_result(server):
    server.reply(
        calls_reply(("a", "weather", '{"city": "Paris"}'), ("b", "weather", '{"city": "Rome"}')),
        Reply(parts=answer("Both done.")),
    )
    turn, events = run(agent_for(server))
    results = [m for m in server.requests[1]["json"]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in results] == [
        ("a", "sunny, 21 C"),
        ("b", "cloudy, 18 C"),
    ]
    assert turn.result().content == "Both done."


def test_a_failing_tool_returns_its_error_to_the_model(server):
    server.reply(
        calls_reply(("c1", "explode", '{"reason": "boom"}')), Reply(parts=answer("Sorry."))
    )
    turn, events = run(agent_for(server))
    ended = [e for e in events if isinstance(e, ToolProgress) and not e.started]
    assert ended[0].ok is False and "exploded: boom" in ended[0].detail
    result = server.requests[1]["json"]["messages"][-1]["content"]
    assert "RuntimeError" in result and "exploded: boom" in result
    assert turn.completed


def test_a_tool_that_times_out_returns_an_error(server):
    release, finished = threading.Event(), threading.Event()

    @tool
    def slow() -> str:
        """Never finishes in time: it waits for the test, which waits for the turn."""
        release.wait(30)
        finished.set()
        return "late"

    server.reply(calls_reply(("c1", "slow", "{}")), Reply(parts=answer("It timed out.")))
    turn, _ = run(agent_for(server, tools=[slow], tool_timeout=0.2))
    assert not finished.is_set()  # the turn went on without waiting for the tool
    release.set()
    assert "timed out" in server.requests[1]["json"]["messages"][-1]["content"]
    assert turn.completed


def test_broken_argument_json_is_reported_not_guessed(server):
    server.reply(calls_reply(("c1", "weather", '{"city": "Par')), Reply(parts=answer("Oops.")))
    turn, _ = run(agent_for(server))
    content = server.requests[1]["json"]["messages"][-1]["content"]
    assert "not valid JSON" in content and turn.completed


def test_an_unknown_tool_is_an_error_for_the_model(server):
    server.reply(calls_reply(("c1", "teleport", "{}")), Reply(parts=answer("No.")))
    run(agent_for(server))
    assert "no tool named 'teleport'" in server.requests[1]["json"]["messages"][-1]["content"]


def test_max_turns_ends_with_a_clear_message(server):
    server.reply(calls_reply(("c1", "weather", '{"city": "Paris"}')))
    turn, events = run(agent_for(server, max_turns=3))
    assert len(server.requests) == 3
    assert isinstance(events[-1], Failed) and "agent.max_turns" in str(events[-1].error)
    with pytest.raises(StreamError):
        turn.result()


def test_callbacks_see_text_only_until_a_tool_call_and_first_delta_once_per_response(server):
    server.reply(
        calls_reply(("c1", "weather", '{"city": "Paris"}'), text="Checking."),
        Reply(parts=answer("Sunny.")),
    )
    texts_seen, firsts = [], []
    agent = agent_for(
        server, stream_delta_callback=texts_seen.append, on_first_delta=lambda: firsts.append(1)
    )
    run(agent)
    assert texts_seen == ["Checking.", "Sunny."] and firsts == [1, 1]


@pytest.mark.parametrize("cut", range(0, 40, 3))
def test_think_blocks_move_to_reasoning_wherever_the_tags_split(server, cut):
    raw = "<think>the user wants x</think>\n\nThe answer is x."
    pieces = [raw[:cut], raw[cut:]] if cut else [raw]
    server.reply(Reply(parts=[sse(*[chunk(p) for p in pieces if p], chunk(finish="stop"))]))
    turn, events = run(agent_for(server, tools=[]))
    assert texts(events) == "The answer is x."
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "the user wants x"
    message = turn.result()
    assert (message.content, message.reasoning) == ("The answer is x.", "the user wants x")


def test_think_tags_in_prose_are_left_alone_and_can_be_kept(server):
    server.reply(Reply(parts=answer("Use <think>...</think> tags.")))
    _, events = run(agent_for(server, tools=[]))
    assert texts(events) == "Use <think>...</think> tags."
    server.reply(Reply(parts=answer("<think>kept</think>ok")))
    _, events = run(agent_for(server, tools=[], strip_think_tags=False))
    assert texts(events) == "<think>kept</think>ok"


def test_fallback_provider_when_the_primary_fails_before_any_text(server):
    with SSEServer() as backup:
        backup.reply(Reply(parts=answer("from the fallback")))
        server.reply(
            Reply(
                parts=[b'{"error":{"message":"no such model"}}'],
                status=404,
                content_type="application/json",
                framing="length",
            )
        )
        fallback = ChatClient(backup.url, None, "other", max_retries=0)
        turn, events = run(agent_for(server, fallback=fallback))
    assert texts(events) == "from the fallback" and turn.completed
    assert backup.requests[0]["json"]["model"] == "other"


def test_fallback_when_the_primary_is_down():
    with SSEServer() as backup:
        backup.reply(Reply(parts=answer("up")))
        primary = ChatClient(f"http://127.0.0.1:{free_port()}/v1", None, "m", max_retries=0)
        agent = Agent(primary, fallback=ChatClient(backup.url, None, "m", max_retries=0))
        assert agent.turn(USER).result().content == "up"


def test_no_fallback_once_text_was_shown(server):
    with SSEServer() as backup:
        server.reply(Reply(parts=[sse(chunk("half an "), done=False)]))
        fallback = ChatClient(backup.url, None, "m", max_retries=0)
        turn, events = run(agent_for(server, fallback=fallback))
        assert not backup.requests
    assert isinstance(events[-1], Failed) and events[-1].error.kind == "incomplete"
    assert events[-1].error.partial.content == "half an "
    assert turn.record()[-1] == {"role": "assistant", "content": "half an "}


def test_interrupt_while_a_tool_runs_stops_at_once(server):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    @tool
    def wait_forever() -> str:
        """Blocks until released, after the turn ended."""
        started.set()
        release.wait(30)
        finished.set()
        return "never used"

    server.reply(calls_reply(("c1", "wait_forever", "{}"), text="Working."))
    agent = agent_for(server, tools=[wait_forever], tool_timeout=60)
    turn = agent.turn(USER)
    threading.Thread(target=lambda: started.wait(10) and turn.interrupt(), daemon=True).start()
    events = list(turn)
    assert not finished.is_set()  # the turn ended without waiting for the tool
    release.set()
    assert isinstance(events[-1], Failed) and events[-1].error.kind == "interrupted"
    assert len(server.requests) == 1  # the tool's result was never sent to the model
    record = turn.record()
    assert record[-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "interrupted by the user",
    }


def test_usage_is_summed_over_the_rounds(server):
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    first = calls_reply(("c1", "weather", '{"city": "Paris"}'))
    first.parts[0] = first.parts[0].replace(
        b"data: [DONE]",
        b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\ndata: [DONE]",
    )
    server.reply(first, Reply(parts=answer("ok", usage=usage)))
    turn, _ = run(agent_for(server))
    assert turn.usage == {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}


def test_a_lone_closing_tag_moves_the_start_to_reasoning(server):
    # Templates that put <think> in the prompt: the reply starts inside the block.
    server.reply(Reply(parts=answer("weighing options</think>", "\n\nGo left.")))
    turn, _ = run(agent_for(server, tools=[]))
    message = turn.result()
    assert (message.content, message.reasoning) == ("Go left.", "weighing options")


def test_usage_adds_up_over_tool_rounds_nested_counts_too(server):
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    first = calls_reply(("c1", "weather", '{"city": "Paris"}'))
    first.parts.insert(-1, sse({"choices": [], "usage": usage}, done=False))
    server.reply(first, Reply(parts=answer("Sunny.", usage=usage)))
    turn = agent_for(server).turn(USER)
    turn.result()
    assert turn.usage["prompt_tokens"] == 20
    assert turn.usage["prompt_tokens_details"] == {"cached_tokens": 8}
    assert turn.usage["completion_tokens_details"] == {"reasoning_tokens": 2}
