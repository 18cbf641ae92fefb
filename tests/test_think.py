"""Think-tag splitting as a pure unit: every cut position, one character at a time."""

from __future__ import annotations

import pytest

from hermes_min.think import ThinkSplitter, split_lone_closer


def split(pieces):
    splitter = ThinkSplitter()
    out = [pair for piece in pieces for pair in splitter.feed(piece)] + splitter.flush()
    text = "".join(p for kind, p in out if kind == "text")
    return text, "".join(p for kind, p in out if kind == "reasoning")


CASES = {
    "block then answer": (
        "  <think>plan: a < b </thin no</think>\n\nThe answer.",
        ("The answer.", "plan: a < b </thin no"),
    ),
    "other tag names": ("<Thinking>r1</Thinking><reasoning>r2</reasoning>A", ("A", "r1r2")),
    "prose mention": (
        "Use <think> tags like <think>x</think>.",
        ("Use <think> tags like <think>x</think>.", ""),
    ),
    "no tags": ("  plain answer", ("  plain answer", "")),
    "unclosed": ("<think>still thinking", ("", "still thinking")),
    "tag-like start": ("<thin ice>", ("<thin ice>", "")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_cut_and_one_character_at_a_time(name):
    raw, expected = CASES[name]
    assert split([raw]) == expected
    assert split(list(raw)) == expected
    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1, 3):
            assert split([raw[:i], raw[i:j], raw[j:]]) == expected, (i, j)


def test_passing_once_past_the_start():
    splitter = ThinkSplitter()
    splitter.feed("<think>x</think>")
    assert not splitter.passing
    splitter.feed("answer")
    assert splitter.passing


def test_a_lone_closer_splits_the_final_message():
    assert split_lone_closer("the model reasons</think>\n\nThe answer") == (
        "the model reasons",
        "The answer",
    )
    assert split_lone_closer("no closer here") is None
    assert split_lone_closer("<think>a</think>b") is None
