"""Event-based datasets read from local folders with Tonic (layer L1; nothing is downloaded).

Each recording is a list of events ``(x[, y], t, p)``. It is turned into ``T`` binary frames
``[T, C, H, W]`` (``uint8``, 1 where at least one event fell into that pixel, polarity and bin):

1. ``window_ms = (start, stop)`` keeps the events with ``start <= t - t_0 < stop`` (ms after
   the recording's first event ``t_0``; ``tonic.transforms.CropTime``);
2. ``polarity``: ``both`` keeps ON and OFF as two channels (C = 2), ``merge`` sums them into one
   (``tonic.transforms.MergePolarities``), ``on``/``off`` keep only p = 1 / p = 0 (C = 1);
3. ``downsample = f`` maps a pixel (or SHD channel) ``x`` to ``floor(x / f)``
   (``tonic.transforms.Downsample(spatial_factor=1/f)``), so a side of ``W`` becomes
   ``ceil(W / f)``;
4. ``binning`` (``tonic.transforms.ToFrame(n_time_bins=T | n_event_bins=T)``, on time-sorted
   events): ``time`` gives bin ``k`` the events with ``t_0 + k w <= t < t_0 + (k + 1) w``, where
   ``w = floor((t_last - t_0) / T)`` us (Tonic drops the few events at ``t >= t_0 + T w``);
   ``count`` gives bin ``k`` events ``k m .. (k + 1) m - 1`` in time order, ``m = floor(n / T)``
   (the last ``n mod T`` events are dropped);
5. a frame holds 1 where the bin's event count is > 0: a chip's input axon carries one spike per
   step, so the frames are exactly the spikes the chip (and the Lava input generator) receives.

On-disk layouts (Tonic's own, each also accepted inside Tonic's class-named folder):

* ``nmnist``: ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin`` (N-MNIST's 40-bit events:
  x, y, polarity bit + 23-bit timestamp in us; read by ``tonic.io.read_mnist_file``); 34x34.
* ``dvsgesture``: ``ibmGestureTrain/<user>_<lighting>/<label>.npy`` and the same under
  ``ibmGestureTest`` (``float`` arrays ``[events, 4]`` of x, y, p, t in ms, as Tonic ships
  them); 128x128, 11 classes.
* ``shd``: ``shd_train.h5`` and ``shd_test.h5`` (HDF5: ``spikes/times`` in s, ``spikes/units``,
  ``labels``); 700 channels as ``(C, H, W) = (1, 1, 700)``, 20 classes; one polarity, so
  ``polarity`` does not apply (``off`` leaves no events).

CIFAR10-DVS is not offered: Tonic reads its ``.aedat4`` files only through the ``aedat``
package, which is not installed here.

Tonic imports torch, so it is imported only when an event dataset is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.recfunctions import unstructured_to_structured

from neuroprune.core.errors import ConfigError, DatasetError
from neuroprune.data.dataset import Dataset
from neuroprune.data.files import malformed_file, require_data_dir

BINNINGS = ("time", "count")
POLARITIES = ("both", "merge", "on", "off")
US_PER_MS = 1000.0


@dataclass(frozen=True)
class EventOptions:
    """How events become frames (module docstring).

    Attributes:
        timesteps: frames ``T`` per recording (the model's time steps).
        binning: ``"time"`` (equal durations) or ``"count"`` (equal event counts).
        downsample: integer spatial factor ``f >= 1``.
        polarity: ``"both"``, ``"merge"``, ``"on"`` or ``"off"``.
        window_ms: ``(start, stop)`` in ms after the first event, or ``None`` for everything.
    """

    timesteps: int = 8
    binning: str = "time"
    downsample: int = 1
    polarity: str = "both"
    window_ms: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _check_positive_int("timesteps", self.timesteps)
        _check_positive_int("event_downsample", self.downsample)
        _check_choice("event_binning", self.binning, BINNINGS)
        _check_choice("event_polarity", self.polarity, POLARITIES)
        if self.window_ms is not None:
            start, stop = self.window_ms
            if not 0 <= start < stop:
                raise ConfigError(
                    "event window must satisfy 0 <= start < stop (ms)",
                    where="config",
                    field="event_window",
                    value=f"{start}:{stop}",
                    fix="For example --event-window 0:300.",
                )

    @property
    def channels(self) -> int:
        return 2 if self.polarity == "both" else 1


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"START:STOP"`` (ms) -> ``(start, stop)``; ``None``/``""`` -> ``None``."""
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).replace(",", ":").split(":")
    try:
        start, stop = (float(p) for p in parts)
    except ValueError as exc:
        raise ConfigError(
            "event window must be START:STOP in ms",
            where="config",
            field="event_window",
            value=text,
            fix="For example --event-window 0:300.",
        ) from exc
    return start, stop


def _check_positive_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("must be a positive integer", where="config", field=field, value=value)


def _check_choice(field: str, value: object, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(
            "unknown value",
            where="config",
            field=field,
            value=value,
            fix=f"Choose one of: {', '.join(options)}.",
        )


# --------------------------------------------------------------------------------------------
# Dataset formats


@dataclass(frozen=True)
class EventFormat:
    """One event dataset's on-disk layout and sensor.

    Attributes:
        name: registry name.
        tonic_folder: Tonic's class-named folder (accepted below ``data_dir``).
        sensor: ``(W, H, P)`` as Tonic writes ``sensor_size``.
        classes: class names.
        expected: the files a folder must hold, for error messages.
        list_split: ``(root, train) -> [(path, label)]`` (raises when the layout is wrong).
        read: ``(path or (file, index)) -> structured events`` with fields x, (y,) t (us), p.
    """

    name: str
    tonic_folder: str
    sensor: tuple[int, int, int]
    classes: tuple[str, ...]
    expected: str
    is_root: Callable[[Path], bool]
    list_split: Callable[[Path, bool], list]
    read: Callable[[Any], np.ndarray]


def _nmnist_is_root(folder: Path) -> bool:
    return (folder / "Train").is_dir() or (folder / "Test").is_dir()


def _nmnist_split(root: Path, train: bool) -> list[tuple[Path, int]]:
    folder = root / ("Train" if train else "Test")
    items = []
    for digit in range(10):
        items += [(path, digit) for path in sorted((folder / str(digit)).glob("*.bin"))]
    return items


def _nmnist_read(path: Path) -> np.ndarray:
    """N-MNIST 40-bit events via Tonic: 5 bytes each (x, y, p<<7 | t[22:16], t[15:8], t[7:0])."""
    from tonic.datasets.nmnist import NMNIST  # deferred: imports tonic
    from tonic.io import read_mnist_file  # deferred: imports tonic

    size = path.stat().st_size
    if size == 0:
        raise malformed_file(path, "empty N-MNIST recording (0 bytes: no events)", size)
    if size % 5:
        raise malformed_file(path, "N-MNIST file length is not a multiple of 5 bytes", size)
    events = read_mnist_file(str(path), dtype=NMNIST.dtype)
    if events.size and (events["x"].max() >= 34 or events["y"].max() >= 34):
        raise malformed_file(path, "event address outside the 34x34 sensor", int(events["x"].max()))
    return events


def _gesture_is_root(folder: Path) -> bool:
    return (folder / "ibmGestureTrain").is_dir() or (folder / "ibmGestureTest").is_dir()


def _gesture_split(root: Path, train: bool) -> list[tuple[Path, int]]:
    folder = root / ("ibmGestureTrain" if train else "ibmGestureTest")
    items = []
    for path in sorted(folder.glob("*/*.npy")):
        if not path.stem.isdigit() or not 0 <= int(path.stem) <= 10:
            raise malformed_file(path, "file name must be the gesture label 0..10", path.name)
        items.append((path, int(path.stem)))
    return items


def _gesture_read(path: Path) -> np.ndarray:
    """Tonic's DVSGesture reading: ``[events, 4]`` (x, y, p, t in ms) -> structured, t in us."""
    from tonic.datasets.dvsgesture import DVSGesture  # deferred: imports tonic

    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise malformed_file(path, f"not a .npy array ({exc})", None) from exc
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise malformed_file(path, "expected an array [events, 4] of x, y, p, t (ms)", raw.shape)
    columns = np.array(raw, dtype=np.float64)
    columns[:, 3] *= US_PER_MS  # ms -> us, as tonic.datasets.DVSGesture does
    events = unstructured_to_structured(columns, DVSGesture.dtype)
    if events.size and (events["x"].max() >= 128 or events["y"].max() >= 128):
        raise malformed_file(
            path, "event address outside the 128x128 sensor", int(events["x"].max())
        )
    return events


SHD_FILES = ("shd_train.h5", "shd_test.h5")


def _shd_is_root(folder: Path) -> bool:
    return any((folder / name).is_file() for name in SHD_FILES)


def _shd_split(root: Path, train: bool) -> list[tuple[tuple[Path, int], int]]:
    path = root / SHD_FILES[0 if train else 1]
    labels = _shd_labels(path)
    return [((path, i), int(label)) for i, label in enumerate(labels)]


def _shd_labels(path: Path) -> np.ndarray:
    import h5py  # deferred: imports h5py

    try:
        with h5py.File(path, "r") as handle:
            labels = np.asarray(handle["labels"][()])
            times, units = handle["spikes/times"], handle["spikes/units"]
            if not len(times) == len(units) == len(labels):
                raise malformed_file(
                    path, "spikes/times, spikes/units and labels differ in length", None
                )
    except (OSError, KeyError) as exc:
        raise malformed_file(path, f"not an SHD HDF5 file ({exc})", None) from exc
    if labels.size and not 0 <= labels.min() <= labels.max() < 20:
        raise malformed_file(
            path, "labels must lie in 0..19", (int(labels.min()), int(labels.max()))
        )
    return labels


def _shd_read(item: tuple[Path, int]) -> np.ndarray:
    """Tonic's SHD reading: times (s) -> us, units -> x, an artificial polarity of 1."""
    import h5py  # deferred: imports h5py
    from tonic.datasets.hsd import SHD  # deferred: imports tonic
    from tonic.io import make_structured_array  # deferred: imports tonic

    path, index = item
    with h5py.File(path, "r") as handle:
        times = np.asarray(handle["spikes/times"][index], dtype=np.float64) * 1e6
        units = np.asarray(handle["spikes/units"][index])
    if units.size and units.max() >= 700:
        raise malformed_file(path, f"sample {index}: unit outside 0..699", int(units.max()))
    return make_structured_array(times, units, 1, dtype=SHD.dtype)


GESTURE_CLASSES = (
    "hand clap",
    "right hand wave",
    "left hand wave",
    "right arm cw",
    "right arm ccw",
    "left arm cw",
    "left arm ccw",
    "arm roll",
    "air drums",
    "air guitar",
    "other",
)

FORMATS: dict[str, EventFormat] = {
    "nmnist": EventFormat(
        "nmnist",
        "NMNIST",
        (34, 34, 2),
        tuple(str(i) for i in range(10)),
        "Train/<0..9>/*.bin and Test/<0..9>/*.bin",
        _nmnist_is_root,
        _nmnist_split,
        _nmnist_read,
    ),
    "dvsgesture": EventFormat(
        "dvsgesture",
        "DVSGesture",
        (128, 128, 2),
        GESTURE_CLASSES,
        "ibmGestureTrain/<user>_<lighting>/<label>.npy and ibmGestureTest/<user>_<lighting>/"
        "<label>.npy",
        _gesture_is_root,
        _gesture_split,
        _gesture_read,
    ),
    "shd": EventFormat(
        "shd",
        "SHD",
        (700, 1, 1),
        tuple(str(i) for i in range(20)),
        "shd_train.h5 and shd_test.h5",
        _shd_is_root,
        _shd_split,
        _shd_read,
    ),
}
EVENT_DATASETS = tuple(FORMATS)


# --------------------------------------------------------------------------------------------
# Loading


def load_event_dataset(name: str, data_dir: str | Path | None, options: EventOptions):
    """Read dataset ``name`` from ``data_dir`` and bin it into frames (module docstring).

    Returns a :class:`neuroprune.data.dataset.Dataset` whose ``x_*`` are ``uint8 [N, T, C, H, W]``.
    Raises :class:`DatasetError` naming every expected file when the folder is missing or
    incomplete, or naming the file when one is malformed.
    """

    fmt = FORMATS[name]
    root = _find_root(fmt, data_dir)
    splits = []
    for train in (True, False):
        items = fmt.list_split(root, train)
        if not items:
            raise _missing(fmt, root, "train" if train else "test")
        splits.append(_frames(fmt, items, options))
    (x_tr, y_tr), (x_te, y_te) = splits
    return Dataset(name, x_tr, y_tr, x_te, y_te, len(fmt.classes), fmt.classes)


def describe_event_dataset(
    name: str, data_dir: str | Path | None, options: EventOptions
) -> tuple[tuple[int, int, int], int]:
    """``(frame shape (C, H, W), classes)`` after checking that the folder holds train and test
    recordings, without reading or binning them (for ``check``)."""
    fmt = FORMATS[name]
    root = _find_root(fmt, data_dir)
    for train in (True, False):
        if not fmt.list_split(root, train):
            raise _missing(fmt, root, "train" if train else "test")
    return frame_shape(fmt.sensor, options), len(fmt.classes)


def _find_root(fmt: EventFormat, data_dir: str | Path | None) -> Path:
    root = require_data_dir(fmt.name, data_dir, fmt.expected)
    for folder in (root, root / fmt.tonic_folder):
        if fmt.is_root(folder):
            return folder
    raise _missing(fmt, root, "train and test")


def _missing(fmt: EventFormat, root: Path, split: str) -> DatasetError:
    return DatasetError(
        f"no {fmt.name} {split} recordings found",
        where=str(root),
        field="data_dir",
        value=str(root),
        fix=f"The folder (or {fmt.tonic_folder}/ below it) must hold {fmt.expected}.",
    )


def _frames(fmt: EventFormat, items: list, options: EventOptions):
    transform = make_transform(fmt.sensor, options)
    x = np.stack([transform(fmt.read(source)) for source, _ in items])
    y = np.array([label for _, label in items], dtype=np.int64)
    return x, y


def frame_sensor(sensor: tuple[int, int, int], options: EventOptions) -> tuple[int, int, int]:
    """``(W, H, P)`` after downsampling ``ceil(side / f)`` and polarity selection."""
    width, height, polarities = sensor
    f = options.downsample
    channels = 1 if polarities == 1 else options.channels
    return (math.ceil(width / f), math.ceil(height / f), channels)


def frame_shape(sensor: tuple[int, int, int], options: EventOptions) -> tuple[int, int, int]:
    """One frame's ``(C, H, W)``."""
    width, height, channels = frame_sensor(sensor, options)
    return (channels, height, width)


def make_transform(sensor: tuple[int, int, int], options: EventOptions):
    """``events -> uint8 [T, C, H, W]`` binary frames, built from Tonic's transforms."""
    from tonic import transforms as tt  # deferred: imports tonic

    steps: list = [_sort_by_time]
    if options.window_ms is not None:
        steps.append(_WindowFromFirstEvent(*options.window_ms))
    if options.polarity in ("on", "off"):
        steps.append(_KeepPolarity(1 if options.polarity == "on" else 0))
    if options.polarity != "both":
        steps.append(tt.MergePolarities())
    if options.downsample > 1:
        steps.append(tt.Downsample(spatial_factor=1.0 / options.downsample))
    bins = {"n_time_bins": options.timesteps} if options.binning == "time" else {}
    bins = bins or {"n_event_bins": options.timesteps}
    steps.append(tt.ToFrame(sensor_size=frame_sensor(sensor, options), **bins))
    compose = tt.Compose(steps)
    shape = (options.timesteps, *frame_shape(sensor, options))

    def to_binary_frames(events: np.ndarray) -> np.ndarray:
        frames = np.asarray(compose(events))
        if frames.ndim == 3:  # no "y" field (SHD): Tonic returns [T, P, W]
            frames = frames[:, :, None, :]
        return (frames.reshape(shape) > 0).astype(np.uint8)

    return to_binary_frames


def _sort_by_time(events: np.ndarray) -> np.ndarray:
    """Tonic's slicers assume time-sorted events; a stable sort keeps equal times in order."""
    return events[np.argsort(events["t"], kind="stable")]


@dataclass(frozen=True)
class _WindowFromFirstEvent:
    """``tonic.transforms.CropTime`` relative to the first event: ``start <= t - t_0 < stop``
    (milliseconds; timestamps are in microseconds)."""

    start_ms: float
    stop_ms: float

    def __call__(self, events: np.ndarray) -> np.ndarray:
        from tonic.transforms import CropTime  # deferred: imports tonic

        if events.size == 0:
            return events
        t0 = float(events["t"].min())
        low, high = t0 + self.start_ms * US_PER_MS, t0 + self.stop_ms * US_PER_MS
        kept = CropTime(min=low, max=high)(events)
        return kept[kept["t"] < high]


@dataclass(frozen=True)
class _KeepPolarity:
    """Keep only the events of polarity ``p`` (1 = ON, 0 = OFF)."""

    polarity: int

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return events[events["p"].astype(int) == self.polarity]
