"""Folding chunks: tool calls by index, usage, reasoning, model, and the events produced."""

from __future__ import annotations

from hermes_min.accumulate import Accumulator
from hermes_min.events import ReasoningDelta, TextDelta, ToolCallStarted


def delta(**fields):
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def call(index=None, id=None, name=None, arguments=None):
    fragment = {"function": {}}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment["id"] = id
    if name is not None:
        fragment["function"]["name"] = name
    if arguments is not None:
        fragment["function"]["arguments"] = arguments
    return fragment


def fold(*chunks):
    acc = Accumulator()
    events = [e for c in chunks for e in acc.feed(c)]
    return acc.message(), events


def calls(message):
    return [(c.id, c.name, c.arguments) for c in message.tool_calls]


def test_text_and_reasoning_deltas_become_events_in_order():
    message, events = fold(delta(reasoning_content="hm"), delta(content="a"), delta(content="b"))
    assert events == [ReasoningDelta("hm"), TextDelta("a"), TextDelta("b")]
    assert (message.content, message.reasoning) == ("ab", "hm")


def test_null_and_empty_content_are_nothing():
    message, events = fold(delta(role="assistant", content=""), delta(content=None), delta())
    assert events == [] and message.content == ""


def test_reasoning_sent_in_both_fields_is_not_doubled():
    message, _ = fold(delta(reasoning_content="x", reasoning="x"), delta(reasoning="y"))
    assert message.reasoning == "xy"


def test_fragments_merge_by_index_and_repeated_id_and_name_are_not_appended():
    message, events = fold(
        delta(tool_calls=[call(0, "c1", "search", '{"q":')]),
        delta(tool_calls=[call(0, "c1", "search", '"x"}')]),
    )
    assert calls(message) == [("c1", "search", '{"q":"x"}')]
    assert events == [ToolCallStarted(0, "search")]


def test_parallel_calls_by_index_keep_creation_order():
    message, _ = fold(
        delta(tool_calls=[call(1, "b", "two", "{}"), call(0, "a", "one", "")]),
        delta(tool_calls=[call(0, arguments="{}")]),
    )
    assert calls(message) == [("b", "two", "{}"), ("a", "one", "{}")]


def test_new_id_with_name_on_a_used_index_starts_a_new_call():
    message, _ = fold(
        delta(tool_calls=[call(0, "x1", "w", '{"l":1}')]),
        delta(tool_calls=[call(0, "x2", "w", '{"l":2}')]),
    )
    assert calls(message) == [("x1", "w", '{"l":1}'), ("x2", "w", '{"l":2}')]


def test_new_id_without_name_continues_the_call():
    # LM Studio: every fragment carries a fresh id and an empty name.
    message, _ = fold(
        delta(tool_calls=[call(0, "a", "f", "")]),
        delta(tool_calls=[call(0, "b", "", '{"k"')]),
        delta(tool_calls=[call(0, "c", "", ":1}")]),
    )
    assert calls(message) == [("a", "f", '{"k":1}')]


def test_indexless_deltas_start_a_call_on_a_name_and_continue_otherwise():
    message, _ = fold(
        delta(tool_calls=[call(id="g1", name="f", arguments='{"a"'), call(arguments=":1}")]),
        delta(tool_calls=[call(name="g", arguments="{}")]),
    )
    assert calls(message) == [("g1", "f", '{"a":1}'), (message.tool_calls[1].id, "g", "{}")]


def test_digit_string_index_and_object_arguments():
    message, _ = fold(delta(tool_calls=[call("0", "s", "calc", {"expr": "2+2"})]))
    assert calls(message) == [("s", "calc", '{"expr":"2+2"}')]


def test_empty_ids_are_replaced_by_unique_stable_ones():
    acc = Accumulator()
    acc.feed(delta(tool_calls=[call(0, "", "a", "{}"), call(1, "", "b", "{}")]))
    first, again = acc.message(), acc.message()
    ids = [c.id for c in first.tool_calls]
    assert all(ids) and len(set(ids)) == 2
    assert ids == [c.id for c in again.tool_calls]


def test_usage_is_the_last_non_null_wherever_it_comes():
    message, _ = fold(
        {"choices": [], "usage": {"total_tokens": 1}},
        {"usage": {"total_tokens": 5}},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
    )
    assert message.usage == {"total_tokens": 5}
    assert message.finish_reason == "stop"


def test_groq_usage():
    message, _ = fold({"choices": [], "x_groq": {"usage": {"total_tokens": 9}}})
    assert message.usage == {"total_tokens": 9}


def test_choice_zero_only_and_first_non_empty_model():
    message, _ = fold(
        {"model": "", "choices": [{"index": 1, "delta": {"content": "no"}}]},
        {"model": "m1", "choices": [{"index": 0, "delta": {"content": "yes"}}]},
        {"model": "m2", "choices": [{"delta": {"content": "!"}}]},
    )
    assert (message.content, message.model) == ("yes!", "m1")


def test_finish_reason_does_not_decide_tools():
    message, _ = fold(
        delta(tool_calls=[call(0, "c", "f", "{}")]),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )
    assert message.finish_reason == "stop" and len(message.tool_calls) == 1
