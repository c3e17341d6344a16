"""Hypothesis strategies for hostile responses, and the one rule every response must obey.

Owns: the strategies (arbitrary bytes, mutated seed bodies from tests/fixtures, deep nesting,
known-bad tokens spliced into real bodies) and :func:`check`, the property itself. Shared by
tests/test_decode_property.py (a small share per CI run) and benchmarks/fuzz_decode.py (as
many cases as you like). It must never draw randomness from anywhere but Hypothesis, so that
a failure shrinks and replays.
"""

from __future__ import annotations

import pathlib

from hypothesis import strategies as st

from aopay_async import AOPayError, CreditHistory
from aopay_async._decode import decode_response

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SEEDS = tuple(
    path.read_bytes() for path in sorted(FIXTURES.iterdir()) if path.suffix in (".json", ".txt")
)

#: Byte strings that once escaped the decoder as something other than an AOPayError, or sit at
#: an edge of a conversion: spliced into seed bodies by the mutator.
TOKENS = (
    b"\xe9",
    b"\xff\xfe",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b'"0001-01-01T00:00:00+14:00"',
    b'"9999-12-31T23:59:59-12:00"',
    b'"0000-00-00"',
    b'"0000-00-00 00:00:00"',
    b"9" * 4400,
    b'"' + b"9" * 4400 + b' Years"',
    b"1e999999",
    b"-0",
    b"null",
    b"true",
    b'"SUCCESS"',
    b'"SPC-200"',
    b'"responsecode": 401, ',
    b'"code": "E1", "description": "x", ',
    b"[" * 2000,
    b"{" * 2000,
    b'{"a":' * 2000,
    b"\\u0000",
    b'\\"',
)

STATUSES = st.one_of(
    st.sampled_from([200, 201, 204, 207, 301, 400, 401, 403, 404, 408, 429, 500, 502, 503, 504]),
    st.integers(min_value=100, max_value=599),
)
HEADERS = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "Content-Type", "X-Other"]),
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(["1", "0", "-1", "1e308", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"]),
        st.sampled_from(["Mon, 01 Jan 0001 00:00:00 GMT", "9" * 5000]),
    ),
    max_size=3,
)


@st.composite
def mutated_seeds(draw: st.DrawFn) -> bytes:
    """A seed body with a few byte-level edits: flips, cuts, duplicates and hostile tokens."""
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "token", "duplicate", "truncate"]))
        at = draw(st.integers(min_value=0, max_value=len(body)))
        if op == "flip" and at < len(body):
            body[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "delete":
            del body[at : at + draw(st.integers(min_value=1, max_value=40))]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "token":
            body[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "duplicate":
            body[at:at] = body[at : at + draw(st.integers(min_value=1, max_value=200))]
        else:
            del body[at:]
    return bytes(body)


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    """Arrays or objects nested up to 200,000 deep, closed or not, bare or inside a seed."""
    depth = draw(st.one_of(st.integers(1, 3000), st.sampled_from([10_000, 100_000, 200_000])))
    opener = draw(st.sampled_from([b"[", b"{", b'{"a":', b'{"data":', b'{"responsecode":']))
    body = opener * depth
    if draw(st.booleans()):
        closer = {b"[": b"]"}.get(opener, b"}")
        body += b"1" + closer * depth
    if draw(st.booleans()):
        seed = draw(st.sampled_from(SEEDS))
        at = draw(st.integers(min_value=0, max_value=len(seed)))
        body = seed[:at] + body + seed[at:]
    return body


BODIES = st.one_of(st.binary(max_size=4096), mutated_seeds(), deep_nesting())

SECRET = "CMP1045"


def check(status: int, headers: dict[str, str], body: bytes) -> None:
    """The rule: a CreditHistory or an AOPayError, whose str and repr are printable text.

    A known secret passed in is never in the error's message, repr or body preview.
    """
    error: AOPayError | None = None
    try:
        history = decode_response(status, headers, body, secrets=(SECRET,))
    except AOPayError as exc:
        error = exc
    if error is None:
        assert isinstance(history, CreditHistory)
        assert 200 <= status < 300
        return
    for text in (str(error), repr(error), getattr(error, "body", "")):
        assert isinstance(text, str)
        assert SECRET not in text
    assert error.__cause__ is None
