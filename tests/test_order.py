"""EpochOrder: batch i is a pure function of (seed, i), whatever order batches are asked in."""

from __future__ import annotations

import numpy as np
import pytest

from selfsup.data.order import EpochOrder


@pytest.mark.parametrize("pool", [23, np.array([4, 8, 15, 16, 23, 42, 7, 9, 11, 3])])
def test_batches_are_the_seeded_permutation_of_their_epoch(pool):
    order = EpochOrder(pool, batch_size=4, seed=5)
    size = pool if isinstance(pool, int) else len(pool)
    per_epoch = size // 4
    assert order.batches_per_epoch == per_epoch
    for index in [0, 1, per_epoch, 3 * per_epoch + 1, 2, 0, per_epoch - 1]:  # back and forth
        epoch, position = divmod(index, per_epoch)
        expected = np.random.default_rng([5, epoch]).permutation(pool)[position * 4 :][:4]
        rows, got_epoch, got_position = order.rows(index)
        np.testing.assert_array_equal(rows, expected)
        assert (got_epoch, got_position) == (epoch, position)


def test_an_epoch_visits_every_item_once_and_a_tiny_pool_still_gives_batches():
    order = EpochOrder(12, batch_size=3, seed=0)
    seen = np.concatenate([order.rows(i)[0] for i in range(4)])
    assert sorted(seen.tolist()) == list(range(12))
    tiny = EpochOrder(2, batch_size=3, seed=0)
    assert tiny.batches_per_epoch == 1 and sorted(tiny.rows(7)[0].tolist()) == [0, 1]
