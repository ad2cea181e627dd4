"""The validation part: cut once from the training split, before any training, never trained on.

Every keep-or-revert and early-stop decision of a run reads the validation part; the test split
is only reported. The cut is a function of the training split's size and the run's seed alone
(:func:`hold_out`), so ``--resume``, ``neuroprune quantize RUN`` and every torchrun rank cut
the same rows.

Rule (:data:`SPLIT_RULE`): ``n_val = clip(round(f * n), 1, n - 1)`` rows of the ``n`` training
rows, ``f`` = :data:`VALIDATION_FRACTION`, taken as the first ``n_val`` entries of the
permutation ``numpy.random.default_rng([seed, 7919]).permutation(n)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from neuroprune.data.dataset import Dataset

VALIDATION_FRACTION = 0.1
"""Share of the training split held out for decisions."""

SPLIT_RULE = "validation-v1: 10 % of the training split, permutation of default_rng([seed, 7919])"
"""Names the rule; a stage artifact made under another rule (or none) is not reused."""

_STREAM = 7919  # second word of the generator's seed: this draw's own random stream


@dataclass(frozen=True, eq=False)
class Holdout:
    """A dataset with its validation part cut out of the training split.

    Attributes:
        train: the dataset every training stage receives: its training split without the
            validation rows, its test split untouched (reported only).
        x_val / y_val: the validation rows (decisions read these only).
        val_indices / train_indices: sorted row numbers into the original training split;
            disjoint, together every row once.
        seed: the seed the cut was drawn with.
    """

    train: Dataset
    x_val: np.ndarray
    y_val: np.ndarray
    val_indices: np.ndarray
    train_indices: np.ndarray
    seed: int

    @property
    def size(self) -> int:
        """Validation samples."""
        return int(len(self.y_val))

    @property
    def digest(self) -> str:
        """sha256 (16 hex digits) of the validation row numbers: equal on every rank and on
        every resume of the same run, different for any other cut."""
        rows = np.ascontiguousarray(self.val_indices, dtype=np.int64).tobytes()
        return hashlib.sha256(rows).hexdigest()[:16]


def hold_out(dataset: Dataset, *, seed: int, fraction: float = VALIDATION_FRACTION) -> Holdout:
    """Cut the validation part out of ``dataset``'s training split (module docstring's rule).

    A training split of one row keeps it and holds out nothing (``n_val = 0``)."""
    n = len(dataset.y_train)
    count = max(min(max(int(round(fraction * n)), 1), n - 1), 0)
    order = np.random.default_rng([int(seed), _STREAM]).permutation(n)
    val, rest = np.sort(order[:count]), np.sort(order[count:])
    part = dataclasses.replace(
        dataset, x_train=dataset.x_train[rest], y_train=dataset.y_train[rest]
    )
    return Holdout(
        train=part,
        x_val=dataset.x_train[val],
        y_val=dataset.y_train[val],
        val_indices=val,
        train_indices=rest,
        seed=int(seed),
    )
