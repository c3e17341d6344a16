"""FirstLines, the CLI's map from each client_order_id to its first input line: it behaves
as the dict it replaced (Hypothesis against a dict model, through many doublings), keeps
ids apart whose digests share a first half (linear probing), and never shows an id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aopay_async.cli import _seen
from aopay_async.cli._seen import FirstLines, digest

_IDS = st.text(min_size=1, max_size=12)


@given(st.lists(st.tuples(st.booleans(), _IDS), max_size=300), st.sampled_from([8, 1024]))
def test_first_lines_behave_like_a_dict(steps: list[tuple[bool, str]], slots: int) -> None:
    """setdefault and get, in any order, answer as dict.setdefault and dict.get do: the
    first line of an id is kept for good, an unseen id has none; len counts the ids."""
    table, model = FirstLines(slots), dict[str, int]()
    for line, (insert, order_id) in enumerate(steps, start=2):
        if insert:
            assert table.setdefault(order_id, line) == model.setdefault(order_id, line)
        else:
            assert table.get(order_id) == model.get(order_id)
        assert len(table) == len(model)
    for order_id, line in model.items():
        assert table.get(order_id) == line


def test_ids_sharing_a_digest_half_are_kept_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every digest's first half forced into 3 values (so most ids collide on their
    slot), 500 ids still keep their own first lines and an unseen id has none."""
    numbers: dict[str, int] = {}

    def crowded(order_id: str) -> tuple[int, int]:
        number = numbers.setdefault(order_id, len(numbers) + 1)
        return number % 3 + 1, number

    monkeypatch.setattr(_seen, "digest", crowded)
    table = FirstLines(8)
    for i in range(500):
        assert table.setdefault(f"ord-{i}", i + 2) == i + 2
    for i in range(500):
        assert table.setdefault(f"ord-{i}", 9999) == i + 2
        assert table.get(f"ord-{i}") == i + 2
    assert table.get("never-seen") is None
    assert len(table) == 500


@pytest.mark.parametrize("order_id", ["", "ord-1", "ключ-7", "\udcff-lone-surrogate"])
def test_digest_is_two_halves_the_first_never_zero(order_id: str) -> None:
    """The digest is two 64-bit halves, stable for an id, the first never 0 (an empty slot);
    ids that differ have different digests (even a lone surrogate can be hashed)."""
    high, low = digest(order_id)
    assert 0 < high < 2**64
    assert 0 <= low < 2**64
    assert digest(order_id) == (high, low)
    assert digest(order_id + "x") != (high, low)


def test_repr_shows_a_count_never_an_id() -> None:
    """The repr names how many ids, not which (they may be customer data)."""
    table = FirstLines()
    table.setdefault("SECRET-ORDER-42", 2)
    assert repr(table) == "FirstLines(1 ids)"
