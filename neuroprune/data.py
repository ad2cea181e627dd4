"""Datasets (layer L2, torch-free): load image classification data as float arrays.

Every dataset comes back as a :class:`Dataset` of ``float32`` images in ``[0, 1]`` with shape
``(N, C, H, W)`` and ``int64`` labels in ``[0, num_classes)``. Nothing is ever downloaded:

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 16 grey levels). Pixels are
  divided by 16. The split is fixed and stratified (``test_size=0.2, random_state=0``):
  1437 train / 360 test images.
* ``mnist`` and ``fashion-mnist``: the four IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each
  plain or gzipped (``.gz``), in ``data_dir`` (or torchvision's ``data_dir/MNIST/raw`` and
  ``data_dir/FashionMNIST/raw``). Pixels are divided by 255.
* ``cifar10``: the python-pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``)
  in ``data_dir`` or ``data_dir/cifar-10-batches-py``. Pixels are divided by 255. The pickles
  are read with an unpickler that only rebuilds numpy arrays, so a hostile file cannot run code.

* ``nmnist``, ``dvsgesture``, ``shd``: event recordings read with Tonic and binned into ``T``
  binary frames (:mod:`neuroprune.events`); ``x_*`` are ``uint8 [N, T, C, H, W]``.

Input encodings turn an image batch into ``T`` time steps ``[T, B, C, H, W]`` (see
:func:`encode`; ``neuroprune.models.encoding`` is the torch twin used in training). Event
datasets use the ``events`` encoding: their frames are the time steps.
"""

from __future__ import annotations

import gzip
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datafiles import malformed_file, require_data_dir
from .errors import DatasetError, did_you_mean
from .events import EVENT_DATASETS, EventOptions, describe_event_dataset, load_event_dataset

IMAGE_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
DATASETS = IMAGE_DATASETS + EVENT_DATASETS
ENCODINGS = ("direct", "poisson", "latency", "events")
IMAGE_ENCODINGS = ("direct", "poisson", "latency")
EVENTS = "events"

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "n-mnist": "nmnist",
    "dvs-gesture": "dvsgesture",
    "dvs128gesture": "dvsgesture",
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

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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
        return tuple(int(s) for s in self.x_train.shape[2 if self.is_event else 1 :])

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


# --------------------------------------------------------------------------------------------
# Registry entry point


def canonical_name(name: str) -> str:
    """Registry name for ``name`` (case-insensitive; ``fashion_mnist`` -> ``fashion-mnist``).

    Raises :class:`DatasetError` with the closest registry names when ``name`` is unknown.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in DATASETS:
        return key
    hint = did_you_mean(key, DATASETS + tuple(_ALIASES), cutoff=0.5)
    raise DatasetError(
        "unknown dataset",
        where="dataset",
        field="name",
        value=name,
        fix=f"{hint}Known datasets: {', '.join(DATASETS)}.",
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
    key = canonical_name(name)
    if key in EVENT_DATASETS:
        return load_event_dataset(key, data_dir, events or EventOptions())
    return _LOADERS[key](data_dir)


def dataset_shape(
    name: str, data_dir: str | Path | None = None, events: EventOptions | None = None
) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of dataset ``name``; an event dataset's folder is checked
    but its recordings are not read (images are loaded: they are small)."""
    key = canonical_name(name)
    if key in EVENT_DATASETS:
        return describe_event_dataset(key, data_dir, events or EventOptions())
    data = _LOADERS[key](data_dir)
    return data.input_shape, data.num_classes


def is_event_dataset(name: str) -> bool:
    """True when ``name`` is an event dataset (its samples are frames, encoding ``events``)."""
    return canonical_name(name) in EVENT_DATASETS


def _load_digits(data_dir: str | Path | None = None) -> Dataset:
    """scikit-learn's bundled 8x8 digits, pixel/16, fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10, DIGIT_CLASSES)


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
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
    "cifar10": _load_cifar10,
}


# --------------------------------------------------------------------------------------------
# Input encodings (numpy; the torch twin lives in neuroprune.models.encoding)


def check_encoding(encoding: str) -> str:
    """Return ``encoding`` if known, else raise :class:`DatasetError` listing the encodings."""
    if encoding not in ENCODINGS:
        raise DatasetError(
            "unknown input encoding",
            where="encoding",
            field="encoding",
            value=encoding,
            fix=f"Use one of: {', '.join(ENCODINGS)}.",
        )
    return encoding


def encode(x: np.ndarray, timesteps: int, encoding: str = "direct", *, seed: int = 0) -> np.ndarray:
    """Encode a batch ``x`` as ``T`` steps: ``float32 [T, B, ...]``.

    Images ``x`` ``(B, ...)`` in ``[0, 1]``:

    * ``direct``: the analog image is the input current at every step, ``s[t] = x``.
    * ``poisson``: Bernoulli rate coding, ``s[t] = 1 if u[t] < x else 0`` with ``u[t]`` uniform
      on ``[0, 1)`` drawn from ``numpy.random.default_rng(seed)``; the expected spike rate of a
      pixel per step equals its intensity.
    * ``latency``: one spike per pixel with ``x > 0``, at step ``t_x = rint((1 - x) (T - 1))``
      (float32 arithmetic, round half to even): the brightest pixels fire first (``x = 1`` at
      step 0), a pixel of 0 never fires. Example, T = 8: x = 0.5 -> rint(3.5) = 4.

    Event frames ``x`` ``(B, T, ...)`` (binary):

    * ``events``: the frames are the time steps, ``s[t] = x[:, t]`` (``x.shape[1]`` must be T).
    """
    check_encoding(encoding)
    if encoding == EVENTS:
        return event_steps(x, timesteps)
    x = np.asarray(x, dtype=np.float32)
    if encoding == "direct":
        return np.broadcast_to(x, (timesteps, *x.shape)).copy()
    if encoding == "latency":
        fire_step = latency_steps(x, timesteps)
        steps = np.arange(timesteps, dtype=np.float32).reshape(-1, *([1] * x.ndim))
        return ((steps == fire_step) & (x > 0)).astype(np.float32)
    rng = np.random.default_rng(seed)
    return (rng.random((timesteps, *x.shape), dtype=np.float32) < x).astype(np.float32)


def latency_steps(x: np.ndarray, timesteps: int) -> np.ndarray:
    """``rint((1 - x) (T - 1))`` in float32: the step at which a pixel of intensity x fires."""
    span = np.float32(timesteps - 1)
    return np.rint((np.float32(1.0) - np.asarray(x, np.float32)) * span)


def event_steps(x: np.ndarray, timesteps: int) -> np.ndarray:
    """Event frames ``(B, T, ...)`` as ``float32 [T, B, ...]`` (raises if T differs)."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[1] != timesteps:
        raise DatasetError(
            f"event samples must have {timesteps} frames",
            where="events encoding",
            field="x.shape",
            value=tuple(x.shape),
            fix="Bin the events with the model's --timesteps (load the dataset again).",
        )
    return np.ascontiguousarray(np.swapaxes(x, 0, 1), dtype=np.float32)


def simulation_input(dataset: Dataset, samples: int) -> np.ndarray:
    """The first ``samples`` test samples as a simulator takes them: images ``[N, C, H, W]``
    (the simulator encodes them with the graph's encoding), event frames as the time steps
    ``float32 [T, N, C, H, W]``."""
    x = dataset.x_test[:samples]
    return event_steps(x, dataset.timesteps) if dataset.is_event else x
