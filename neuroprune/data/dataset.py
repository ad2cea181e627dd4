"""The :class:`Dataset` every loader returns: float32 images in [0, 1], int64 labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from neuroprune.core.errors import DatasetError


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image or event classification dataset held in memory.

    Attributes:
        name: registry name (``"digits"``, ``"mnist"``, ``"nmnist"``, ...).
        x_train / x_test: ``float32`` images in ``[0, 1]``, shape ``(N, C, H, W)``; or, for an
            event dataset, ``uint8`` binary frames ``(N, T, C, H, W)``.
        y_train / y_test: ``int64`` labels in ``[0, num_classes)``, shape ``(N,)``.
        num_classes: number of classes.
        class_names: optional human-readable class names (``num_classes`` entries).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            _check_split(self, split)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(
                "train and test images differ in shape",
                where=f"dataset {self.name}",
                field="x_test.shape",
                value=self.x_test.shape,
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise DatasetError(
                "class_names must have one entry per class",
                where=f"dataset {self.name}",
                field="class_names",
                value=len(self.class_names),
            )

    @property
    def is_event(self) -> bool:
        """True for binned event frames ``(N, T, C, H, W)``."""
        return self.x_train.ndim == 5

    @property
    def timesteps(self) -> int | None:
        """Frames per event sample (``None`` for images)."""
        return int(self.x_train.shape[1]) if self.is_event else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one sample at one time step, ``(C, H, W)``."""
        shape = tuple(int(s) for s in self.x_train.shape[2 if self.is_event else 1 :])
        return cast(tuple[int, int, int], shape)

    @property
    def train_size(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.x_test.shape[0])


def _check_split(ds: Dataset, split: str) -> None:
    """Validate one split's dtypes, shapes and label range (raises :class:`DatasetError`)."""
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    where = f"dataset {ds.name}"
    layout = "(N, T, C, H, W)" if ds.is_event else "(N, C, H, W)"
    dtype, ndim = (np.uint8, 5) if ds.is_event else (np.float32, 4)
    problems = [
        (x.dtype != dtype, f"x_{split}.dtype", x.dtype, f"samples must be {np.dtype(dtype)}"),
        (x.ndim != ndim, f"x_{split}.shape", x.shape, f"samples must have shape {layout}"),
        (y.dtype != np.int64, f"y_{split}.dtype", y.dtype, "labels must be int64"),
        (y.shape != x.shape[:1], f"y_{split}.shape", y.shape, "need one label per image"),
    ]
    for bad, field_name, value, message in problems:
        if bad:
            raise DatasetError(message, where=where, field=field_name, value=value)
    if y.size and (y.min() < 0 or y.max() >= ds.num_classes):
        raise DatasetError(
            f"labels must lie in [0, {ds.num_classes})",
            where=where,
            field=f"y_{split}",
            value=(int(y.min()), int(y.max())),
        )
