"""Spike-camera detection scenes (layer L1, torch-free): ``spikecam-digits`` and ``spikecam``.

**The pixel model** (a Vidar-style integrate-and-fire spike camera, Dong et al., "Spike camera
and its coding methods", DCC 2017). Every pixel ``(y, x)`` integrates the light falling on it and
fires when the integral crosses a threshold ``theta``; the spike subtracts ``theta`` (the
remainder is kept, so no light is lost between spikes)::

    A[0]   = U(0, theta)                        (random start phase, seeded)
    A'[t]  = A[t-1] + g * I[t](y, x)            (I in [0, 1]: intensity, g: gain per step)
    S[t]   = 1 if A'[t] >= theta else 0         (the camera fires on >=, Vidar's comparator)
    A[t]   = A'[t] - theta * S[t]

so a pixel of constant intensity ``I`` fires ``g I / theta`` spikes per step on average (at most
one per step; ``g I / theta >= 1`` fires every step).

**``spikecam-digits``** (generated on the fly, nothing downloaded). A scene is a square canvas of
``canvas`` pixels on a background of intensity ``background``, holding 1 to ``max_digits``
digits of scikit-learn's bundled 8x8 digits (each scaled by ``digit_scale``, integer nearest
neighbour; intensity = pixel / 16). Digit ``i`` starts at a top-left corner ``p_i`` and moves
with velocity ``v_i`` (pixels per step, each component uniform in ``[-speed, speed]``), so it
sits at ``round(p_i + v_i (t - t_c))`` at step ``t``, with ``t_c = (T - 1) // 2`` the centre step;
positions are clipped to the canvas. Intensity at a pixel is ``max(background, digit pixels)``.
The labels are each digit's class and its tight box ``(x0, y0, x1, y1)`` (pixels, ``x1``/``y1``
exclusive) around its non-zero pixels **at the centre step** ``t_c``; digits are placed so their
centre-step boxes do not overlap. Train scenes use digit images from the train part of the fixed
``digits`` split (:func:`neuroprune.data.datasets.load_dataset`), test scenes from its test
part, so no digit image is seen in both.

**``spikecam``** (real recordings from a local folder, ``--data-dir DIR``)::

    DIR/classes.txt          one class name per line (class k = line k)
    DIR/train/*.npz          one scene per file
    DIR/test/*.npz

Each ``.npz`` holds ``spikes`` (``uint8`` or ``bool``, 0/1, shape ``(T, H, W)`` or
``(T, 1, H, W)``, the same for every scene), ``boxes`` (``float``, ``(k, 4)``, ``x0 y0 x1 y1``
in pixels, ``0 <= x0 < x1 <= W``, ``0 <= y0 < y1 <= H``) and ``labels`` (integers, ``(k,)``, in
``[0, classes)``). Every problem is one :class:`~neuroprune.core.errors.DatasetError` naming the
file, the field, the value and the fix, raised before anything is written.

A :class:`DetectionDataset` stores scenes as ``uint8 (N, T, 1, H, W)`` spike frames and pads the
per-scene boxes to ``max_objects`` rows (``labels == -1`` marks padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroprune.core.errors import ConfigError, DatasetError
from neuroprune.data.files import malformed_file, require_data_dir

DETECTION_DATASETS = ("spikecam-digits", "spikecam")
DIGIT_SIDE = 8  # sklearn digits are 8x8
SPIKECAM_FILE_KEYS = ("spikes", "boxes", "labels")


@dataclass(frozen=True, eq=False)
class DetectionDataset:
    """Spike frames with boxes and classes per scene.

    Attributes:
        name: registry name.
        x_train / x_test: ``uint8`` spike frames ``(N, T, 1, H, W)``, values 0/1.
        boxes_train / boxes_test: ``float32 (N, M, 4)``, ``x0 y0 x1 y1`` pixels (padded rows 0).
        labels_train / labels_test: ``int64 (N, M)``, class or ``-1`` for a padded row.
        num_classes: number of classes; class_names: their names.
    """

    name: str
    x_train: np.ndarray
    boxes_train: np.ndarray
    labels_train: np.ndarray
    x_test: np.ndarray
    boxes_test: np.ndarray
    labels_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]

    is_event = True
    is_detection = True

    @property
    def timesteps(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one frame."""
        c, h, w = (int(s) for s in self.x_train.shape[2:])
        return (c, h, w)

    @property
    def train_size(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.x_test.shape[0])

    def targets(self, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (k, 4), labels (k,))`` of scene ``index`` of ``split`` without padding."""
        boxes = getattr(self, f"boxes_{split}")[index]
        labels = getattr(self, f"labels_{split}")[index]
        keep = labels >= 0
        return boxes[keep], labels[keep]


# --------------------------------------------------------------------------------------------
# The pixel model


def integrate_and_fire(
    intensity: np.ndarray, *, threshold: float = 1.0, gain: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Spike frames ``uint8 [T, ...]`` of a Vidar-style camera watching ``intensity [T, ...]``.

    ``A[0] ~ U(0, threshold)`` (seeded); ``A' = A + gain * I[t]``; ``S = A' >= threshold``;
    ``A = A' - threshold * S`` (module docstring). ``intensity`` must lie in ``[0, 1]``.
    """
    if threshold <= 0 or gain <= 0:
        raise ConfigError(
            "spike camera threshold and gain must be > 0",
            where="dataset spikecam-digits",
            field="threshold" if threshold <= 0 else "gain",
            value=threshold if threshold <= 0 else gain,
        )
    rng = np.random.default_rng(seed)
    accumulator = rng.uniform(0.0, threshold, size=intensity.shape[1:])
    spikes = np.zeros(intensity.shape, dtype=np.uint8)
    for t in range(intensity.shape[0]):
        accumulator = accumulator + gain * intensity[t]
        fired = accumulator >= threshold
        spikes[t] = fired
        accumulator = accumulator - threshold * fired
    return spikes


# --------------------------------------------------------------------------------------------
# spikecam-digits


@dataclass(frozen=True)
class SpikecamOptions:
    """How ``spikecam-digits`` scenes are generated (module docstring).

    Attributes:
        train_scenes / test_scenes: number of scenes per split (the size option).
        canvas: side of the square frame in pixels.
        timesteps: frames ``T`` per scene.
        max_digits: at most this many digits per scene (at least 1).
        digit_scale: integer upscaling of the 8x8 digits.
        speed: largest velocity component, pixels per step.
        background: background intensity in ``[0, 1)``.
        threshold / gain: the pixel model's ``theta`` and ``g``.
        seed: everything random (placement, motion, digit choice, start phases) derives from it.
    """

    train_scenes: int = 512
    test_scenes: int = 128
    canvas: int = 32
    timesteps: int = 8
    max_digits: int = 3
    digit_scale: int = 1
    speed: float = 0.5
    background: float = 0.1
    threshold: float = 1.0
    gain: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for field_name in ("train_scenes", "test_scenes", "canvas", "timesteps", "max_digits"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    "must be a positive integer",
                    where="dataset spikecam-digits",
                    field=field_name,
                    value=value,
                )
        side = DIGIT_SIDE * self.digit_scale
        if self.digit_scale < 1 or self.canvas < 2 * side:
            raise ConfigError(
                "the canvas must hold at least two digit widths",
                where="dataset spikecam-digits",
                field="canvas",
                value=self.canvas,
                fix=f"Use a canvas of at least {2 * side} pixels or a smaller digit_scale.",
            )
        if not 0 <= self.background < 1 or self.speed < 0:
            raise ConfigError(
                "background must lie in [0, 1) and speed be >= 0",
                where="dataset spikecam-digits",
                field="background" if not 0 <= self.background < 1 else "speed",
                value=self.background if not 0 <= self.background < 1 else self.speed,
            )


def make_spikecam_digits(options: SpikecamOptions | None = None) -> DetectionDataset:
    """Generate ``spikecam-digits`` (module docstring); the same options give the same arrays."""
    from neuroprune.data.datasets import DIGIT_CLASSES, load_dataset  # deferred: cycle

    options = options or SpikecamOptions()
    digits = load_dataset("digits")
    rng = np.random.default_rng(options.seed)
    x_tr, boxes_tr, labels_tr = _scenes(
        digits.x_train[:, 0], digits.y_train, options.train_scenes, options, rng
    )
    x_te, boxes_te, labels_te = _scenes(
        digits.x_test[:, 0], digits.y_test, options.test_scenes, options, rng
    )
    return DetectionDataset(
        "spikecam-digits", x_tr, boxes_tr, labels_tr, x_te, boxes_te, labels_te, 10, DIGIT_CLASSES
    )


def _scenes(images, classes, count: int, options: SpikecamOptions, rng: np.random.Generator):
    """``count`` scenes: frames ``(N, T, 1, H, W)``, padded boxes and labels."""
    t_steps, side = options.timesteps, options.canvas
    frames = np.zeros((count, t_steps, 1, side, side), dtype=np.uint8)
    boxes = np.zeros((count, options.max_digits, 4), dtype=np.float32)
    labels = np.full((count, options.max_digits), -1, dtype=np.int64)
    for n in range(count):
        intensity, scene_boxes, scene_labels = _one_scene(images, classes, options, rng)
        frames[n, :, 0] = integrate_and_fire(
            intensity,
            threshold=options.threshold,
            gain=options.gain,
            seed=int(rng.integers(2**31)),
        )
        boxes[n, : len(scene_boxes)] = scene_boxes
        labels[n, : len(scene_labels)] = scene_labels
    return frames, boxes, labels


def _one_scene(images, classes, options: SpikecamOptions, rng: np.random.Generator):
    """Intensity ``[T, H, W]`` of one scene, its centre-step boxes and classes."""
    t_steps, side = options.timesteps, options.canvas
    digit_side = DIGIT_SIDE * options.digit_scale
    centre = (t_steps - 1) // 2
    intensity = np.full((t_steps, side, side), options.background, dtype=np.float64)
    placed: list[np.ndarray] = []
    scene_labels: list[int] = []
    wanted = int(rng.integers(1, options.max_digits + 1))
    for _ in range(50 * wanted):  # rejection sampling of non-overlapping boxes
        if len(placed) == wanted:
            break
        index = int(rng.integers(len(images)))
        digit = np.kron(images[index], np.ones((options.digit_scale, options.digit_scale)))
        corner = rng.uniform(0, side - digit_side, size=2)  # (y, x) at the centre step
        velocity = rng.uniform(-options.speed, options.speed, size=2)
        box = _tight_box(digit, _position(corner, velocity, centre, centre, side, digit_side))
        if box is None or any(_overlap(box, other) for other in placed):
            continue
        for t in range(t_steps):
            y, x = _position(corner, velocity, t, centre, side, digit_side)
            window = intensity[t, y : y + digit_side, x : x + digit_side]
            np.maximum(window, digit, out=window)
        placed.append(box)
        scene_labels.append(int(classes[index]))
    return np.clip(intensity, 0.0, 1.0), np.array(placed, np.float32), np.array(scene_labels)


def _position(corner, velocity, t: int, centre: int, side: int, digit_side: int):
    """Integer top-left ``(y, x)`` at step ``t``, clipped to the canvas."""
    y, x = np.clip(np.round(corner + velocity * (t - centre)), 0, side - digit_side).astype(int)
    return int(y), int(x)


def _tight_box(digit: np.ndarray, top_left: tuple[int, int]) -> np.ndarray | None:
    """``x0 y0 x1 y1`` around the digit's non-zero pixels at ``top_left`` (None if blank)."""
    rows, cols = np.nonzero(digit > 0)
    if rows.size == 0:
        return None
    y, x = top_left
    x0, y0 = x + int(np.min(cols)), y + int(np.min(rows))
    return np.array([x0, y0, x + int(np.max(cols)) + 1, y + int(np.max(rows)) + 1])


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


# --------------------------------------------------------------------------------------------
# spikecam: a local folder of recordings


def load_spikecam_folder(data_dir: str | Path | None) -> DetectionDataset:
    """Read the ``spikecam`` folder layout (module docstring) into a :class:`DetectionDataset`."""
    expected = "classes.txt, train/*.npz and test/*.npz"
    root = require_data_dir("spikecam", data_dir, expected)
    classes = _read_classes(root / "classes.txt")
    splits = [_read_split(root / split, len(classes)) for split in ("train", "test")]
    (x_tr, scenes_tr), (x_te, scenes_te) = splits
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(
            "train and test spike frames differ in shape",
            where=str(root / "test"),
            field="spikes.shape",
            value=x_te.shape[1:],
            fix=f"Every scene must have the train scenes' shape {x_tr.shape[1:]}.",
        )
    most = max(1, max(len(s[1]) for s in scenes_tr + scenes_te))
    boxes_tr, labels_tr = _pad(scenes_tr, most)
    boxes_te, labels_te = _pad(scenes_te, most)
    return DetectionDataset(
        "spikecam", x_tr, boxes_tr, labels_tr, x_te, boxes_te, labels_te, len(classes), classes
    )


def _read_classes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise DatasetError(
            "class list missing",
            where=str(path.parent),
            field="classes.txt",
            value=None,
            fix="Write classes.txt with one class name per line (class k = line k).",
        )
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names:
        raise malformed_file(path, "classes.txt names no class", 0)
    return names


def _read_split(folder: Path, num_classes: int):
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        raise DatasetError(
            "no scenes found",
            where=str(folder),
            field="*.npz",
            value=0,
            fix="Put one .npz per scene (spikes, boxes, labels) into this folder.",
        )
    scenes = [_read_scene(path, num_classes) for path in files]
    shape = scenes[0][0].shape
    for path, scene in zip(files, scenes, strict=True):
        if scene[0].shape != shape:
            raise _bad(path, "spikes", scene[0].shape, f"every scene must have shape {shape}")
    frames = np.stack([s[0] for s in scenes])
    return frames, [(s[1], s[2]) for s in scenes]


def _read_scene(path: Path, num_classes: int):
    """``(spikes (T, 1, H, W) uint8, boxes (k, 4) float32, labels (k,) int64)`` of one file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in SPIKECAM_FILE_KEYS if k not in archive.files]
            if missing:
                raise _bad(
                    path, "keys", ", ".join(missing), "The .npz must hold spikes, boxes, labels."
                )
            spikes, boxes, labels = (np.asarray(archive[k]) for k in SPIKECAM_FILE_KEYS)
    except (OSError, ValueError) as exc:
        raise malformed_file(path, f"not a readable .npz ({exc})", None) from exc
    spikes = _check_spikes(path, spikes)
    t_h_w = spikes.shape[-2:]
    return spikes, _check_boxes(path, boxes, t_h_w), _check_labels(path, labels, boxes, num_classes)


def _check_spikes(path: Path, spikes: np.ndarray) -> np.ndarray:
    if spikes.ndim == 3:
        spikes = spikes[:, None]
    if spikes.ndim != 4 or spikes.shape[1] != 1:
        raise _bad(path, "spikes", spikes.shape, "spikes must have shape (T, H, W) or (T, 1, H, W)")
    if spikes.dtype.kind not in "bui" or (spikes.size and not np.isin(spikes, (0, 1)).all()):
        raise _bad(path, "spikes", str(spikes.dtype), "spikes must be 0/1 integers or bools")
    return spikes.astype(np.uint8)


def _check_boxes(path: Path, boxes: np.ndarray, height_width: tuple[int, ...]) -> np.ndarray:
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "fiu":
        raise _bad(path, "boxes", boxes.shape, "boxes must be numbers of shape (k, 4): x0 y0 x1 y1")
    h, w = height_width
    x0, y0, x1, y1 = boxes.T
    ok = (x0 >= 0) & (x0 < x1) & (x1 <= w) & (y0 >= 0) & (y0 < y1) & (y1 <= h)
    if not ok.all():
        row = int(np.argmin(ok))
        raise _bad(
            path, f"boxes[{row}]", boxes[row].tolist(),
            f"need 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h} (pixels)",
        )  # fmt: skip
    return boxes.astype(np.float32)


def _check_labels(path: Path, labels: np.ndarray, boxes: np.ndarray, num_classes: int):
    count = 0 if boxes.size == 0 else len(boxes)
    if labels.shape != (count,) or (labels.size and labels.dtype.kind not in "iu"):
        raise _bad(path, "labels", labels.shape, f"need {count} integer labels, one per box")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise _bad(
            path, "labels", (int(labels.min()), int(labels.max())),
            f"labels must lie in [0, {num_classes}) (lines of classes.txt)",
        )  # fmt: skip
    return labels.astype(np.int64)


def _bad(path: Path, field_name: str, value: object, fix: str) -> DatasetError:
    return DatasetError(
        "malformed spike-camera scene", where=str(path), field=field_name, value=value, fix=fix
    )


def _pad(scenes: list[tuple[np.ndarray, np.ndarray]], most: int):
    boxes = np.zeros((len(scenes), most, 4), np.float32)
    labels = np.full((len(scenes), most), -1, np.int64)
    for n, (scene_boxes, scene_labels) in enumerate(scenes):
        boxes[n, : len(scene_boxes)] = scene_boxes
        labels[n, : len(scene_labels)] = scene_labels
    return boxes, labels


def load_detection_dataset(
    name: str, data_dir: str | Path | None = None, options: SpikecamOptions | None = None
) -> DetectionDataset:
    """``spikecam-digits`` (generated with ``options``) or ``spikecam`` (read from ``data_dir``)."""
    if name == "spikecam-digits":
        return make_spikecam_digits(options)
    return load_spikecam_folder(data_dir)
