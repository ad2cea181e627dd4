"""Training, evaluation and channel pruning of the spiking detector (``--model detector``).

* :func:`train_detector`: Adam on :func:`neuroprune.models.detector.detection_loss` over the
  scenes' spike frames ``[T, B, 1, H, W]`` (the frames are the time steps, as for event data),
  calling the pruning callbacks of :class:`neuroprune.train.loop.TrainCallback` in the same
  order as :func:`neuroprune.train.loop.train` (``regularize`` -> backward -> ``before_step``
  -> step -> ``after_step``; ``on_epoch_end``), so a pruning method runs unchanged.
* :func:`mean_average_precision`: COCO mAP of the decoded boxes
  (:func:`neuroprune.models.detector.decode`) computed by torchmetrics'
  ``MeanAveragePrecision`` (pycocotools backend): ``map_50`` is AP at IoU 0.5, ``map`` the
  mean over IoU 0.50:0.05:0.95, both averaged over classes, in ``[0, 1]``.

Channel pruning of the detector is :func:`neuroprune.pipeline.detect.prune_detector_channels`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import functional

from neuroprune.models.detector import SpikingDetector, decode, detection_loss


@dataclass(frozen=True)
class DetectTrainConfig:
    """Detector training: ``epochs``, Adam ``lr``, ``batch_size`` scenes, ``seed``."""

    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0


def _frames(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 (N, T, C, H, W)`` -> ``float [T, N, C, H, W]``."""
    return torch.as_tensor(np.asarray(x)).float().transpose(0, 1).contiguous()


def train_detector(
    model: SpikingDetector,
    data: Any,
    config: DetectTrainConfig,
    *,
    callbacks: Sequence[Any] = (),
    progress=None,
) -> list[dict[str, float]]:
    """Train in place on ``data.x_train`` / boxes / labels; one ``{"epoch", "loss",
    "seconds"}`` per epoch (module docstring)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = data.train_size
    steps = math.ceil(n / config.batch_size)
    for cb in callbacks:
        getattr(cb, "on_train_begin", lambda *a: None)(model, optimizer, steps, config.epochs)
    boxes, labels = torch.as_tensor(data.boxes_train), torch.as_tensor(data.labels_train)
    history = []
    generator = np.random.default_rng(config.seed)
    iteration = 0
    for epoch in range(config.epochs):
        started, total = time.perf_counter(), 0.0
        model.train()
        order = generator.permutation(n)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            spikes = model(_frames(data.x_train[idx]))
            loss = detection_loss(model, spikes, boxes[idx], labels[idx])
            for cb in callbacks:
                if hasattr(cb, "regularize"):
                    loss = cb.regularize(loss)
            optimizer.zero_grad()
            loss.backward()
            for cb in callbacks:
                getattr(cb, "before_step", lambda: None)()
            optimizer.step()
            functional.reset_net(model)
            for cb in callbacks:
                getattr(cb, "after_step", lambda *a: None)(iteration, config.lr)
            iteration += 1
            total += float(loss.detach()) * len(idx)
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total / n,
            "seconds": time.perf_counter() - started,
        }
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                metrics = dict(cb.on_epoch_end(epoch + 1, metrics) or metrics)
        history.append(metrics)
        if progress is not None:
            progress({"event": "epoch", **metrics})
    return history


@torch.no_grad()
def predict_boxes(
    model: SpikingDetector, frames: np.ndarray, *, batch_size: int = 64, conf: float = 0.1
) -> list[dict[str, torch.Tensor]]:
    """Decoded detections of every scene of ``frames (N, T, C, H, W)``."""
    model.eval()
    found: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(frames), batch_size):
        spikes = model(_frames(frames[start : start + batch_size]))
        functional.reset_net(model)
        found += decode(model, spikes, conf=conf)
    return found


def mean_average_precision(
    model: SpikingDetector, data: Any, *, split: str = "test", conf: float = 0.0
) -> dict[str, float]:
    """``{"map_50", "map"}`` of ``model`` on ``split`` by torchmetrics (module docstring)."""
    from torchmetrics.detection import MeanAveragePrecision  # deferred: heavy import

    frames = getattr(data, f"x_{split}")
    predictions = predict_boxes(model, frames, conf=conf)
    targets = []
    for index in range(len(frames)):
        boxes, labels = data.targets(split, index)
        targets.append({"boxes": torch.as_tensor(boxes), "labels": torch.as_tensor(labels)})
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(predictions, targets)
    result = metric.compute()
    return {"map_50": float(result["map_50"]), "map": float(result["map"])}


def parameter_count(model: torch.nn.Module) -> int:
    """Nonzero weights of every conv/linear (BN and biases not counted)."""
    return sum(
        int(torch.count_nonzero(m.weight))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )
