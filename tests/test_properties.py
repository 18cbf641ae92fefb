"""Properties that hold for any input: bytes and chunk shapes through the decoder and the
accumulator, Markdown through the renderer and splitter.

The default profile is derandomized (the same examples every run: CI must not turn red on a
new random draw); `HYPOTHESIS_PROFILE=explore` searches afresh with more examples.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_min import StreamError, replay
from hermes_min.accumulate import Accumulator
from hermes_min.response import BodyFolder
from hermes_min.telegram.markdown import render
from hermes_min.telegram.parts import split, utf16_len
from tests.fake_botapi import parse_text

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,  # a loaded machine must not fail a property on time
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
ANY = JSON | st.just("") | st.just([]) | st.just({})


def reads(body: bytes, cuts: list[int]) -> list[bytes]:
    """The body cut at these positions: one read each."""
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:])]


def folds_or_fails(parts: list[bytes], content_type: str = "text/event-stream") -> None:
    """The body folds into a Message or raises StreamError; nothing else ever escapes."""
    try:
        replay(parts, content_type=content_type)
    except StreamError:
        pass


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_any_bytes_fold_or_fail_cleanly(body, cuts):
    folds_or_fails(reads(body, cuts))


@given(st.binary(max_size=300))
def test_any_bytes_as_a_whole_json_body_fold_or_fail_cleanly(body):
    folds_or_fails([body], "application/json")


CHUNK = st.fixed_dictionaries(
    {},
    optional={
        "model": ANY,
        "usage": ANY,
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": ANY,
                    "finish_reason": ANY,
                    "delta": ANY
                    | st.fixed_dictionaries(
                        {},
                        optional={
                            "content": ANY,
                            "reasoning_content": ANY,
                            "tool_calls": ANY
                            | st.lists(
                                st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "index": ANY,
                                        "id": ANY,
                                        "function": ANY
                                        | st.fixed_dictionaries(
                                            {}, optional={"name": ANY, "arguments": ANY}
                                        ),
                                    },
                                ),
                                max_size=3,
                            ),
                        },
                    ),
                },
            ),
            max_size=2,
        )
        | ANY,
    },
)


@given(st.lists(CHUNK | JSON, max_size=6), st.booleans())
def test_any_chunk_shapes_fold_or_fail_cleanly(chunks, done):
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ("data: [DONE]\n\n" * done)
    folds_or_fails([body.encode()])


@given(st.lists(CHUNK, max_size=6))
def test_the_accumulator_takes_any_chunk_or_names_what_is_wrong(chunks):
    accumulator = Accumulator()
    for chunk in chunks:
        try:
            accumulator.feed(chunk)
        except StreamError as error:
            assert error.kind == "protocol" and "the server sent a chunk whose" in error.message
    message = accumulator.message()
    for call in message.tool_calls:
        assert isinstance(call.id, str) and isinstance(call.arguments, str)


@given(st.lists(CHUNK, max_size=4))
def test_a_whole_json_reply_of_any_shape_folds_or_fails_cleanly(chunks):
    for chunk in chunks:
        folder = BodyFolder(200, "application/json")
        folder.feed(json.dumps(chunk).encode())
        assert len(folder.finish()) >= 1


PIECES = list("ab c\n*_`~[]()#>-+=|{}.!\\<&/:") + ["```", "http://x.y/", "😀", "é", "\u200b"]
MARKDOWN = st.lists(st.sampled_from(PIECES), max_size=150).map("".join)


@given(MARKDOWN, st.sampled_from(["MarkdownV2", "HTML"]), st.integers(300, 4096))
def test_any_markdown_renders_to_parts_telegram_accepts(markdown, mode, limit):
    for part in split(render(markdown, mode), mode, limit=limit):
        visible, _ = parse_text(part, mode)  # raises what Telegram would refuse
        assert utf16_len(visible) <= limit


@given(st.text(max_size=9000))
def test_any_long_text_splits_into_parts_within_4096_units(text):
    for part in split(render(text, "MarkdownV2"), "MarkdownV2"):
        visible, _ = parse_text(part, "MarkdownV2")
        assert utf16_len(visible) <= 4096


MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "message_id": ANY,
        "chat": ANY | st.fixed_dictionaries({}, optional={"id": ANY, "type": ANY, "title": ANY}),
        "from": ANY
        | st.fixed_dictionaries(
            {}, optional={"id": ANY, "first_name": ANY, "last_name": ANY, "username": ANY}
        ),
        "sender_chat": ANY,
        "text": ANY,
        "caption": ANY,
        "entities": ANY
        | st.lists(
            st.fixed_dictionaries({}, optional={"type": ANY, "offset": ANY, "length": ANY}),
            max_size=3,
        ),
        "reply_to_message": ANY,
        "message_thread_id": ANY,
        "is_topic_message": ANY,
        "photo": ANY,
    },
)
UPDATE = st.fixed_dictionaries(
    {}, optional={"update_id": ANY | st.integers(-5, 2**64), "message": MESSAGE | ANY}
)


@given(st.lists(UPDATE | JSON, max_size=5), st.none() | st.integers(0, 2**63))
def test_any_update_objects_are_read_checked_or_skipped(batch, offset):
    from hermes_min.config import Config, TelegramConfig
    from hermes_min.telegram.access import Access
    from hermes_min.telegram.chats import user_text
    from hermes_min.telegram.updates import read_batch

    config = Config(telegram=TelegramConfig(allowed_users=(1,), group_mode="mention"))
    access = Access(config, {"id": 99, "username": "hermes_bot"})
    for update in read_batch(batch, offset):
        assert update.message is None or not update.problem
        if update.message is not None:  # everything the bot then does with it, raw-data free
            message = update.message
            assert access.verdict(message) in ("answer", "deny", "ignore")
            text = message.text or ""
            access.command(text)
            user_text(message, access.strip_mention(text))
            assert isinstance(message.key, str) and isinstance(message.sender_key, str)
