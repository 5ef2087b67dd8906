"""Choose ``n`` items of a stream (frames of a data file) without holding the rest."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator

__all__ = ["SAMPLE_MODES", "choose"]

SAMPLE_MODES = ("first", "random")


def choose(
    items: Iterable, n: int | None, *, how: str = "first", seed: int = 0
) -> Iterator[tuple[int, object]]:
    """``(index, item)`` pairs of ``n`` items of ``items``, in stream order.

    ``how="first"``: the first ``n`` (nothing after them is read); ``"random"``: ``n``
    items drawn uniformly without replacement by reservoir sampling (seeded by
    ``seed``; the whole stream is read, at most ``n`` items are held). ``n=None``:
    every item."""
    if how not in SAMPLE_MODES:
        raise ValueError(f"unknown sampling '{how}'; expected one of {', '.join(SAMPLE_MODES)}")
    if n is not None and n < 1:
        raise ValueError(f"number of items must be at least 1, got {n}")
    indexed = enumerate(items)
    if n is None:
        yield from indexed
        return
    if how == "first":
        yield from itertools.islice(indexed, n)
        return
    rng = random.Random(seed)
    reservoir: list[tuple[int, object]] = []
    for index, item in indexed:
        if index < n:
            reservoir.append((index, item))
        else:
            slot = rng.randrange(index + 1)
            if slot < n:
                reservoir[slot] = (index, item)
    yield from sorted(reservoir, key=lambda pair: pair[0])
