"""The checks every file-backed dataset shares (layer L1, torch-free): the data folder the user
names, and the one-line answer to a file that cannot be read. Used by :mod:`neuroprune.data.datasets`
(IDX, CIFAR) and :mod:`neuroprune.data.events` (Tonic layouts); neuroprune never downloads."""

from __future__ import annotations

from pathlib import Path

from neuroprune.core.errors import DatasetError


def require_data_dir(dataset: str, data_dir: str | Path | None, expected: str) -> Path:
    """``data_dir`` as an existing folder, else a :class:`DatasetError` naming ``expected``
    (the files the dataset needs, in words)."""
    if data_dir is None:
        raise DatasetError(
            "this dataset is read from files and no data folder was given",
            where=f"dataset {dataset}",
            field="data_dir",
            value=None,
            fix=f"Pass --data-dir DIR holding {expected} (neuroprune never downloads).",
        )
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(
            "data folder does not exist",
            where=f"dataset {dataset}",
            field="data_dir",
            value=str(root),
            fix=f"Create it and put {expected} in it (neuroprune never downloads).",
        )
    return root


def malformed_file(path: Path, message: str, value: object) -> DatasetError:
    """The error for a dataset file that exists but cannot be read as its format."""
    return DatasetError(
        message,
        where=str(path),
        field=None if value is None else "file",
        value=value,
        fix="Replace the file with an intact copy of the original dataset file.",
    )
