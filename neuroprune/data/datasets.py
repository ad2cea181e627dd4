"""Datasets (layer L1, torch-free): load image classification data as float arrays.

Every dataset comes back as a :class:`Dataset` of ``float32`` images in ``[0, 1]`` with shape
``(N, C, H, W)`` and ``int64`` labels in ``[0, num_classes)``. Nothing is ever downloaded:

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 16 grey levels). Pixels are
  divided by 16. The split is fixed and stratified (``test_size=0.2, random_state=0``):
  1437 train / 360 test images.
* ``digits-4x4``: the same digits reduced to what Xylo Audio 2's SNN core takes (16 input
  channels, 8 readout neurons): each image average-pooled 2x2 to ``1 x 4 x 4`` (16 channels),
  and only the classes 0-7 kept (1154 train / 289 test images of the same split).
* ``mnist`` and ``fashion-mnist``: the four IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each
  plain or gzipped (``.gz``), in ``data_dir`` (or torchvision's ``data_dir/MNIST/raw`` and
  ``data_dir/FashionMNIST/raw``). Pixels are divided by 255.
* ``cifar10``: the python-pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``)
  in ``data_dir`` or ``data_dir/cifar-10-batches-py``. Pixels are divided by 255. The pickles
  are read with an unpickler that only rebuilds numpy arrays, so a hostile file cannot run code.

* ``nmnist``, ``dvsgesture``, ``shd``: event recordings read with Tonic and binned into ``T``
  binary frames (:mod:`neuroprune.data.events`); ``x_*`` are ``uint8 [N, T, C, H, W]``.
* ``spikecam-digits`` (generated) and ``spikecam`` (a local folder): spike-camera **detection**
  scenes with boxes (:mod:`neuroprune.data.spikecam`, read by ``load_detection_dataset``);
  :func:`load_dataset` refuses them in one line.

Input encodings turn an image batch into ``T`` time steps ``[T, B, C, H, W]`` (see
:func:`encode`; ``neuroprune.models.encoding`` is the torch twin used in training). Event
datasets use the ``events`` encoding: their frames are the time steps.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neuroprune.core.errors import DatasetError, NeuropruneError
from neuroprune.core.registry import unknown_name
from neuroprune.data.dataset import Dataset
from neuroprune.data.events import (
    EVENT_DATASETS,
    EventOptions,
    describe_event_dataset,
    load_event_dataset,
)
from neuroprune.data.files import malformed_file, require_data_dir
from neuroprune.data.spikecam import DETECTION_DATASETS

IMAGE_DATASETS = ("digits", "digits-4x4", "mnist", "fashion-mnist", "cifar10")
DATASETS = IMAGE_DATASETS + EVENT_DATASETS + DETECTION_DATASETS

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "n-mnist": "nmnist",
    "dvs-gesture": "dvsgesture",
    "dvs128gesture": "dvsgesture",
    "spikecam_digits": "spikecam-digits",
}

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DIGIT_CLASSES = tuple(str(i) for i in range(10))

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# --------------------------------------------------------------------------------------------
# Registry entry point


def _normalized(name: str) -> str:
    """``name`` lower-cased, trimmed and with its alias resolved (not checked)."""
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def canonical_name(name: str) -> str:
    """Registry name for ``name`` (case-insensitive; ``fashion_mnist`` -> ``fashion-mnist``).

    Raises :class:`DatasetError` with the closest registry names when ``name`` is unknown.
    """
    key = _normalized(name)
    if key in DATASETS:
        return key
    raise _unknown_dataset(key, name)


def _unknown_dataset(key: str, name: str) -> NeuropruneError:
    """The "unknown dataset, did you mean" error for ``name`` (normalized to ``key``)."""
    return unknown_name(
        key,
        DATASETS + tuple(_ALIASES),
        what="dataset",
        where="dataset",
        field="name",
        value=name,
        error=DatasetError,
        listing=f"Known datasets: {', '.join(DATASETS)}.",
        cutoff=0.5,
    )


def load_dataset(
    name: str, data_dir: str | Path | None = None, events: EventOptions | None = None
) -> Dataset:
    """Load dataset ``name`` (see :data:`DATASETS`); ``data_dir`` holds the files where needed.

    ``events`` says how an event dataset is binned into frames (default ``EventOptions()``:
    8 time bins, both polarities); image datasets ignore it. Never downloads. Raises
    :class:`DatasetError` for an unknown name, a missing folder or file (naming every expected
    file) or a malformed file (naming the file).
    """
    key = _normalized(name)
    if key in EVENT_DATASETS:
        return load_event_dataset(key, data_dir, events or EventOptions())
    if key in DETECTION_DATASETS:
        raise _detection_only(key)
    if key in _LOADERS:
        return _LOADERS[key](data_dir)
    raise _unknown_dataset(key, name)


def dataset_shape(
    name: str, data_dir: str | Path | None = None, events: EventOptions | None = None
) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of dataset ``name``; an event dataset's folder is checked
    but its recordings are not read (images are loaded: they are small)."""
    key = canonical_name(name)
    if key in EVENT_DATASETS:
        return describe_event_dataset(key, data_dir, events or EventOptions())
    if key in DETECTION_DATASETS:
        raise _detection_only(key)
    data = _LOADERS[key](data_dir)
    return data.input_shape, data.num_classes


def is_detection_dataset(name: str) -> bool:
    """True for a detection dataset (boxes per scene: :mod:`neuroprune.data.spikecam`)."""
    return canonical_name(name) in DETECTION_DATASETS


def _detection_only(key: str) -> DatasetError:
    """The error for a detection dataset asked for as a classification dataset."""
    return DatasetError(
        "is a detection dataset (boxes per scene), not a classification dataset",
        where=f"dataset {key}",
        field="dataset",
        value=key,
        fix="Fit it with --model detector (neuroprune fit), or read it with "
        "neuroprune.data.spikecam.load_detection_dataset.",
    )


def is_event_dataset(name: str) -> bool:
    """True when ``name`` is an event dataset (its samples are frames, encoding ``events``)."""
    return canonical_name(name) in EVENT_DATASETS


def _load_digits(data_dir: str | Path | None = None) -> Dataset:
    """scikit-learn's bundled 8x8 digits, pixel/16, fixed stratified 80/20 split.

    The file is read where scikit-learn installed it, without importing scikit-learn (its
    import costs about 2 s, more than the rest of the loader): :func:`_digits_csv` finds it,
    :func:`stratified_split` reproduces ``train_test_split(x, y, test_size=0.2,
    random_state=0, stratify=y)`` index for index.
    """
    table = _read_digits_csv(_digits_csv())
    x = (table[:, :-1].reshape(-1, 8, 8).astype(np.float32) / 16.0)[:, None, :, :]
    y = table[:, -1].astype(np.int64)
    train, test = stratified_split(y, test_fraction=0.2, seed=0)
    return Dataset("digits", x[train], y[train], x[test], y[test], 10, DIGIT_CLASSES)


DIGITS_FILE = ("datasets", "data", "digits.csv.gz")  # inside the sklearn package folder


def _digits_csv() -> Path:
    """Path of scikit-learn's ``sklearn/datasets/data/digits.csv.gz``, found with
    ``importlib.util.find_spec("sklearn")`` (locates the package, imports nothing)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*DIGITS_FILE)
        if path.is_file():
            return path
    raise DatasetError(
        "scikit-learn's bundled digits file is not installed",
        where="dataset digits",
        field="sklearn/" + "/".join(DIGITS_FILE),
        value=", ".join(folders) or "scikit-learn not found",
        fix="Install scikit-learn (pip install scikit-learn) into this environment.",
    )


def _read_digits_csv(path: Path) -> np.ndarray:
    """The digits table ``[1797, 65]`` (64 pixels 0..16, then the label), as scikit-learn's
    ``load_digits`` reads it (``np.loadtxt`` of the gzipped CSV, comma-delimited)."""
    try:
        with gzip.open(path, mode="rt", encoding="utf-8") as text:
            table = np.loadtxt(text, delimiter=",")
    except (OSError, ValueError, EOFError) as exc:
        raise malformed_file(path, "is not the gzipped digits CSV", str(exc)) from exc
    if table.ndim != 2 or table.shape[1] != 65:
        raise malformed_file(path, "does not hold 65 columns per row", table.shape)
    return table


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` sample positions of a stratified shuffle split of labels ``y``:
    the split scikit-learn's ``train_test_split(..., test_size=test_fraction,
    random_state=seed, stratify=y)`` makes (``StratifiedShuffleSplit._iter_indices`` of
    scikit-learn 1.x, one ``numpy.random.RandomState(seed)`` drawn in the same order).

    ``n_test = ceil(test_fraction * N)``, ``n_train = N - n_test``. Per class ``c`` with
    ``n_c`` samples the train and test counts are the approximate modes of the multivariate
    hypergeometric (:func:`_approximate_mode`); each class's positions are permuted, the first
    counts go to train, the next to test, and both lists are permuted at the end.
    """
    n = len(y)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        positions = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(positions[: n_i[i]])
        test.extend(positions[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(
    class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState
) -> np.ndarray:
    """Draws per class out of ``n_draws``: ``floor(n_c / N * n_draws)``, then one more for the
    classes with the largest remainders (ties broken by ``rng.choice``), as scikit-learn's
    ``sklearn.utils.extmath._approximate_mode``."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


POOLED_DIGIT_CLASSES = 8  # Xylo Audio 2 has 8 readout neurons


def _load_digits_4x4(data_dir: str | Path | None = None) -> Dataset:
    """``digits`` average-pooled 2x2 to ``1 x 4 x 4`` (16 input channels), classes 0-7 (module
    docstring): the reduction Xylo Audio 2's 16 input channels and 8 readout neurons need."""
    full = _load_digits(data_dir)

    def reduce(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = y < POOLED_DIGIT_CLASSES
        pooled = x[keep].reshape(-1, 1, 4, 2, 4, 2).mean(axis=(3, 5))
        return pooled.astype(np.float32), y[keep]

    x_tr, y_tr = reduce(full.x_train, full.y_train)
    x_te, y_te = reduce(full.x_test, full.y_test)
    classes = DIGIT_CLASSES[:POOLED_DIGIT_CLASSES]
    return Dataset("digits-4x4", x_tr, y_tr, x_te, y_te, POOLED_DIGIT_CLASSES, classes)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a native-endian numpy array.

    IDX layout: 2 zero bytes, a dtype code (0x08 = uint8, ...), the number of dimensions ``d``,
    ``d`` big-endian uint32 sizes, then the data in C order. Raises :class:`DatasetError`
    naming the file when the magic number, the sizes or the length are wrong.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise malformed_file(path, "not an IDX file (bad magic number)", raw[:4].hex())
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise malformed_file(path, "IDX header is truncated", len(raw))
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[raw[2]]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise malformed_file(
            path, f"IDX size mismatch: header {shape} needs {expected} bytes", len(raw)
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise malformed_file(path, f"cannot read file ({exc})", None) from exc


def _find_files(
    dataset: str, data_dir: str | Path | None, names: tuple[str, ...], subdirs: tuple[str, ...]
) -> list[Path]:
    """Locate every file of ``names`` (plain or ``.gz``) in one candidate folder under data_dir."""
    expected = ", ".join(f"{n}[.gz]" for n in names)
    root = require_data_dir(dataset, data_dir, expected)
    for folder in (root, *(root / s for s in subdirs)):
        found = [_first_existing(folder, n) for n in names]
        if any(found):
            return _require_all(dataset, folder, names, found, expected)
    raise DatasetError(
        f"no {dataset} files found",
        where=str(root),
        field="data_dir",
        value=str(root),
        fix=f"Put {expected} into {root} (or {', '.join(subdirs)} below it).",
    )


def _first_existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _require_all(
    dataset: str, folder: Path, names: tuple[str, ...], found: list, expected: str
) -> list[Path]:
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    if missing:
        raise DatasetError(
            f"{dataset} files missing",
            where=str(folder),
            field="missing",
            value=", ".join(missing),
            fix=f"The folder must hold all of: {expected}.",
        )
    return found


def _load_idx_dataset(name: str, data_dir, subdir: str, classes: tuple[str, ...]) -> Dataset:
    paths = _find_files(name, data_dir, IDX_FILES, (f"{subdir}/raw", subdir, name))
    arrays = [read_idx(p) for p in paths]
    x_tr, x_te = (_idx_images(p, a) for p, a in ((paths[0], arrays[0]), (paths[2], arrays[2])))
    y_tr, y_te = (_idx_labels(p, a) for p, a in ((paths[1], arrays[1]), (paths[3], arrays[3])))
    _check_pair(paths[0], x_tr, paths[1], y_tr)
    _check_pair(paths[2], x_te, paths[3], y_te)
    return Dataset(name, x_tr, y_tr, x_te, y_te, 10, classes)


def _idx_images(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim != 3 or array.dtype != np.uint8:
        raise malformed_file(path, "expected uint8 images of shape (N, H, W)", array.shape)
    if array.shape[0] == 0:
        raise malformed_file(path, "the file holds 0 images", array.shape)
    return (array.astype(np.float32) / 255.0)[:, None, :, :]


def _idx_labels(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim != 1 or array.dtype != np.uint8:
        raise malformed_file(path, "expected uint8 labels of shape (N,)", array.shape)
    if array.size and array.max() > 9:
        raise malformed_file(path, "labels must lie in 0..9", int(array.max()))
    return array.astype(np.int64)


def _check_pair(x_path: Path, x: np.ndarray, y_path: Path, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise malformed_file(
            y_path, f"{len(y)} labels for {len(x)} images in {x_path.name}", len(y)
        )


def _load_mnist(data_dir: str | Path | None) -> Dataset:
    return _load_idx_dataset("mnist", data_dir, "MNIST", DIGIT_CLASSES)


def _load_fashion(data_dir: str | Path | None) -> Dataset:
    return _load_idx_dataset("fashion-mnist", data_dir, "FashionMNIST", FASHION_CLASSES)


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and builtin containers (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: ``(uint8 images (N, 3, 32, 32), int64 labels (N,))``.

    Raises :class:`DatasetError` naming the file when it is not a CIFAR-10 batch.
    """
    path = Path(path)
    raw = _read_bytes(path)
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"] if b"data" in batch else batch["data"])
        labels = batch[b"labels"] if b"labels" in batch else batch["labels"]
        labels = np.asarray(labels, dtype=np.int64)
    except Exception as exc:  # any unpickling or key failure means "not a CIFAR batch"
        raise malformed_file(path, f"not a CIFAR-10 python batch ({exc})", None) from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise malformed_file(path, "data must be uint8 of shape (N, 3072)", data.shape)
    if data.shape[0] == 0:
        raise malformed_file(path, "the batch holds 0 images", data.shape)
    if labels.shape != (data.shape[0],) or (
        labels.size and not 0 <= labels.min() <= labels.max() <= 9
    ):
        raise malformed_file(path, "labels must be N integers in 0..9", labels.shape)
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(data_dir: str | Path | None) -> Dataset:
    paths = _find_files("cifar10", data_dir, CIFAR_FILES, ("cifar-10-batches-py",))
    batches = [read_cifar_batch(p) for p in paths]
    x_tr = np.concatenate([b[0] for b in batches[:5]]).astype(np.float32) / 255.0
    y_tr = np.concatenate([b[1] for b in batches[:5]])
    x_te = batches[5][0].astype(np.float32) / 255.0
    return Dataset("cifar10", x_tr, y_tr, x_te, batches[5][1], 10, CIFAR_CLASSES)


_LOADERS: dict[str, Callable[[str | Path | None], Dataset]] = {
    "digits": _load_digits,
    "digits-4x4": _load_digits_4x4,
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
    "cifar10": _load_cifar10,
}
