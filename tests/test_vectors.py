"""The public SSE vectors in ../shared/vectors, at every read split the runner uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hermes_min import StreamError, replay

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "sse-public.json"

if not VECTORS.is_file():
    pytest.skip(
        f"public vectors not found at {VECTORS} (they live beside the project, "
        "not in it); the project's own tests cover the same rules",
        allow_module_level=True,
    )

_DOC = json.loads(VECTORS.read_text(encoding="utf-8"))


def _expand(value):
    if isinstance(value, dict) and "repeat" in value:
        return value.get("prefix", "") + value["repeat"] * value["count"] + value.get("suffix", "")
    return value


def _splits(vector, reads):
    body = b"".join(reads)
    yield reads
    yield [body]
    if "resplit_read_size" in vector:
        size = vector["resplit_read_size"]
        yield [body[i : i + size] for i in range(0, len(body), size)]
        return
    if len(body) < 20000:
        yield [body[i : i + 1] for i in range(len(body))]
    if len(body) < 3000:
        for i in range(1, len(body)):
            yield [body[:i], body[i:]]


def _run(reads, status, content_type):
    try:
        message, error = replay(reads, status, content_type), None
    except StreamError as exc:
        message, error = exc.partial, exc
    return message, error


def _check(expected, message, error):
    assert message.content == _expand(expected.get("content", ""))
    assert message.reasoning == _expand(expected.get("reasoning", ""))
    want_calls = expected.get("tool_calls") or []
    assert len(message.tool_calls) == len(want_calls)
    for want, got in zip(want_calls, message.tool_calls):
        assert got.id if want["id"] == "*" else got.id == want["id"]
        assert (got.name, got.arguments) == (want["name"], want["arguments"])
    assert message.finish_reason == expected.get("finish_reason")
    assert message.usage == expected.get("usage")
    if "model" in expected:
        assert message.model == expected["model"]
    want_error = expected.get("error")
    assert (error is None) == (want_error is None), error
    if want_error:
        assert error.kind == want_error["type"]
        assert want_error.get("message", "").lower() in error.message.lower()
        for key in ("status", "retry"):
            if key in want_error:
                assert getattr(error, key) == want_error[key]


@pytest.mark.parametrize("vector", _DOC["vectors"], ids=lambda v: v["name"])
def test_public_vector(vector):
    reads = [_expand(c).encode("latin-1") for c in vector["chunks"]]
    status = vector.get("status", 200)
    content_type = vector.get("content_type", "text/event-stream")
    for split in _splits(vector, reads):
        _check(vector["expected"], *_run(split, status, content_type))
