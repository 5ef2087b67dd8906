"""Choosing N items of a stream: the first N, or a seeded uniform sample."""

import collections

import pytest

from equiscope.sampling import choose


def counted(n, seen):
    for index in range(n):
        seen.append(index)
        yield f"item {index}"


def test_first_reads_no_further_than_n():
    seen = []
    chosen = list(choose(counted(100, seen), 3))
    assert chosen == [(0, "item 0"), (1, "item 1"), (2, "item 2")]
    assert seen == [0, 1, 2]


def test_random_is_seeded_in_stream_order_and_holds_n():
    first = list(choose(counted(50, []), 5, how="random", seed=1))
    again = list(choose(counted(50, []), 5, how="random", seed=1))
    other = list(choose(counted(50, []), 5, how="random", seed=2))
    indices = [index for index, _ in first]
    assert first == again and first != other
    assert len(set(indices)) == 5 and indices == sorted(indices)
    assert indices != [0, 1, 2, 3, 4]
    assert all(item == f"item {index}" for index, item in first)


def test_random_is_uniform():
    """Each of 10 items is drawn with probability 3/10 (2,000 seeds: 5 sigma is 0.051)."""
    counts = collections.Counter()
    for seed in range(2000):
        counts.update(index for index, _ in choose(range(10), 3, how="random", seed=seed))
    for index in range(10):
        assert abs(counts[index] / 2000 - 0.3) < 0.051


def test_fewer_items_than_asked_gives_them_all():
    assert [i for i, _ in choose(range(3), 10, how="random")] == [0, 1, 2]
    assert [i for i, _ in choose(range(3), None)] == [0, 1, 2]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown sampling 'last'; expected one of first, random"):
        list(choose(range(3), 1, how="last"))
    with pytest.raises(ValueError, match="at least 1, got 0"):
        list(choose(range(3), 0))
