"""Input encodings (numpy): ``T`` time steps ``[T, B, C, H, W]`` from an image batch
(direct, poisson, latency) or from event frames.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from neuroprune.core.errors import DatasetError
from neuroprune.data.dataset import Dataset

ENCODINGS = ("direct", "poisson", "latency", "events")
IMAGE_ENCODINGS = ("direct", "poisson", "latency")
EVENTS = "events"


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
    return event_steps(x, cast(int, dataset.timesteps)) if dataset.is_event else x
