"""Write small synthetic event datasets in their native on-disk formats (tests only).

Each writer returns the events it wrote, per split, as ``[(x, y, t_us, p, label), ...]`` arrays
so tests can bin them independently of the reader. Class ``c`` puts its events on a band of
pixels (or channels) ``[c * band, (c + 1) * band)``, plus a little noise, so a tiny model can learn it.

* N-MNIST: ``Train/<digit>/<id>.bin`` and ``Test/...``; 5 bytes per event:
  ``x``, ``y``, ``p << 7 | t[22:16]``, ``t[15:8]``, ``t[7:0]`` (t in us, 23 bits).
* DVS128 Gesture (Tonic's npy release): ``ibmGestureTrain/user01_led/<label>.npy`` with an
  array ``[events, 4]`` of ``x, y, p, t`` where t is in ms.
* SHD: ``shd_train.h5`` / ``shd_test.h5`` with variable-length ``spikes/times`` (s, float32) and
  ``spikes/units`` (uint16), ``labels`` (uint16), ``extra/keys`` and ``extra/speaker``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLITS = (("train", True), ("test", False))


def _band_events(rng, label: int, count: int, width: int, height: int, duration_us: int, band=3):
    """``count`` events: x on the class band ``[label * band, +band)``, 10 % noise events."""
    x = label * band + rng.integers(0, band, count)
    noise = rng.random(count) < 0.1
    x[noise] = rng.integers(0, width, int(noise.sum()))
    y = rng.integers(0, height, count)
    t = np.sort(rng.integers(0, duration_us, count))
    t[0], t[-1] = 0, duration_us - 1  # a fixed span makes the time bins predictable
    p = rng.integers(0, 2, count)
    return np.minimum(x, width - 1), y, t, p


def write_nmnist(root: Path, per_class: int = 2, classes: int = 10, seed: int = 0) -> dict:
    """N-MNIST ``.bin`` files under ``root``; returns ``{split: [(x, y, t, p, label)]}``."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, train in SPLITS:
        samples = []
        for label in range(classes):
            folder = Path(root) / ("Train" if train else "Test") / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                x, y, t, p = _band_events(rng, label, 400, 34, 34, 300_000)
                (folder / f"{i:05d}.bin").write_bytes(nmnist_bytes(x, y, t, p))
                samples.append((x, y, t, p, label))
        written[split] = samples
    return written


def nmnist_bytes(x, y, t, p) -> bytes:
    """Encode events in N-MNIST's 40-bit format (module docstring)."""
    t = np.asarray(t, dtype=np.int64)
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (np.asarray(p) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_dvsgesture(root: Path, per_class: int = 2, classes: int = 11, seed: int = 1) -> dict:
    """DVS Gesture ``.npy`` files under ``root`` (one user folder per sample index)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, train in SPLITS:
        samples = []
        for i in range(per_class):
            folder = Path(root) / ("ibmGestureTrain" if train else "ibmGestureTest")
            folder = folder / f"user{i + 1:02d}_led"
            folder.mkdir(parents=True, exist_ok=True)
            for label in range(classes):
                x, y, t, p = _band_events(rng, label, 1500, 128, 128, 500_000, band=11)
                t = (t // 1000) * 1000  # the npy release stores whole milliseconds
                t[-1] = 499_000
                array = np.stack([x, y, p, t // 1000], axis=1).astype(np.float64)
                np.save(folder / f"{label}.npy", array)
                samples.append((x, y, t, p, label))
        written[split] = samples
    return written


def write_shd(root: Path, per_class: int = 2, classes: int = 20, seed: int = 2) -> dict:
    """``shd_train.h5`` and ``shd_test.h5`` under ``root``."""
    import h5py

    rng = np.random.default_rng(seed)
    written = {}
    Path(root).mkdir(parents=True, exist_ok=True)
    for split, _ in SPLITS:
        samples = []
        for label in range(classes):
            for _ in range(per_class):
                x, _y, t, _p = _band_events(rng, label, 400, 700, 1, 800_000, band=35)
                samples.append((x, np.zeros_like(x), t, np.ones_like(x), label))
        with h5py.File(Path(root) / f"shd_{split}.h5", "w") as handle:
            floats = h5py.vlen_dtype(np.float32)
            units = h5py.vlen_dtype(np.uint16)
            times = handle.create_dataset("spikes/times", (len(samples),), dtype=floats)
            chans = handle.create_dataset("spikes/units", (len(samples),), dtype=units)
            for i, (x, y, t, p, label) in enumerate(samples):
                seconds = (t / 1e6).astype(np.float32)
                times[i] = seconds
                chans[i] = x.astype(np.uint16)
                # the reader sees float32 seconds * 1e6, truncated to integer microseconds
                samples[i] = (x, y, (seconds.astype(np.float64) * 1e6).astype(np.int64), p, label)
            handle["labels"] = np.array([s[4] for s in samples], dtype=np.uint16)
            handle["extra/keys"] = np.array([f"word{i}".encode() for i in range(classes)])
            handle["extra/speaker"] = np.zeros(len(samples), dtype=np.uint16)
        written[split] = samples
    return written


WRITERS = {"nmnist": write_nmnist, "dvsgesture": write_dvsgesture, "shd": write_shd}
