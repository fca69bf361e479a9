"""Which items make training batch `index`: epochs of seeded permutations, one after another.

Every data source that draws batches without replacement shares this rule: batch i belongs to
epoch e = i // batches_per_epoch, whose order is the permutation of the item pool seeded by
(seed, e), and takes the next `batch_size` items of it. That keeps a batch a pure function of its
index (exact resume). The permutation is computed once per epoch, not once per batch: for a
corpus of millions of instances that was milliseconds per step, growing with the corpus.
"""

from __future__ import annotations

import numpy as np


class EpochOrder:
    """Batches of `batch_size` items drawn from `pool` (a count or an array of item ids)."""

    def __init__(self, pool: int | np.ndarray, batch_size: int, seed: int) -> None:
        self.pool, self.batch_size, self.seed = pool, batch_size, seed
        size = pool if isinstance(pool, int) else len(pool)
        self.batches_per_epoch = max(1, size // batch_size)
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def rows(self, index: int) -> tuple[np.ndarray, int, int]:
        """(the items of batch `index`, its epoch, its position in the epoch)."""
        epoch, position = divmod(index, self.batches_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.pool)
            self._epoch = epoch
        start = position * self.batch_size
        return self._order[start : start + self.batch_size], epoch, position
