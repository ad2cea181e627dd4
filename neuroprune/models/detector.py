"""A spiking single-scale YOLO-style detector on a SEW-ResNet backbone (``--model detector``).

**Network.** The backbone is :class:`~neuroprune.models.sew.SEWResNet`'s stages (ADD skip
connections of spikes; stage ``k > 0`` halves the side with a stride-2 conv), so a ``(C, H, W)``
input gives a ``G_h x G_w`` grid with ``G = ceil(H / 2^(stages-1))``. The readout is a 1x1 conv
(``head``, bias-free, BN) + neuron with ``5 + K`` channels per cell, the last layer like any zoo
model's: its **spikes** ``[T, B, 5 + K, G_h, G_w]`` are the output, so the chip emits exactly
what is decoded (no membrane read-out is needed). Per cell ``(i, j)`` the spike rates
``r = (1/T) sum_t S[t]`` (each in ``[0, 1]``, resolution ``1/T``) are read as

    objectness  o  = r[0]
    centre      cx = (j + r[1]) * s_w,      cy = (i + r[2]) * s_h      (s = H / G: cell side, px)
    size        w  = r[3] * M_w,            h  = r[4] * M_h            (M = max_box * image side)
    class       k* = argmax_k r[5 + k]      (first index wins ties)
    score          = o * r[5 + k*]

**Loss** (rates, squared errors like YOLOv1; ``B`` scenes, ``R`` the responsible cells: the cell
holding each ground-truth box's centre, one box per cell, the later box wins)::

    L = (1/B) [ l_obj  sum_{cells in R} (o - 1)^2  +  l_noobj  sum_{cells not in R} o^2
              + l_box  sum_{R} sum_{m=1..4} (r[m] - b[m])^2
              + l_cls  sum_{R} sum_k (r[5+k] - [k = class])^2 ]

with box targets ``b = (cx/s_w - j, cy/s_h - i, w/M_w, h/M_h)`` clipped to ``[0, 1]`` and
defaults ``l_obj = 1, l_noobj = 0.5, l_box = 5, l_cls = 1``.

**Decoding** (:func:`decode`): keep cells with ``score > conf`` (default ``1/T``-sized 0.1),
sort by score, then greedy per-class non-maximum suppression at IoU 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import functional, layer

from neuroprune.core.errors import ModelError
from neuroprune.models.reader import SynapseLayer
from neuroprune.models.sew import SEWResNet, _check_sew_args
from neuroprune.models.zoo import neuron_factory

DETECTOR_DEFAULT_STAGES: tuple[tuple[int, int], ...] = ((8, 1), (16, 1), (16, 1))
HEAD_FIELDS = 5  # objectness, cx, cy, w, h


@dataclass(frozen=True)
class DetectionLossWeights:
    """The loss weights ``l_obj, l_noobj, l_box, l_cls`` (module docstring)."""

    obj: float = 1.0
    noobj: float = 0.5
    box: float = 5.0
    cls: float = 1.0


class SpikingDetector(SEWResNet):
    """SEW backbone + 1x1 conv head emitting ``5 + K`` spike channels per grid cell."""

    neuroprune_topology = "residual"
    neuroprune_task = "detect"

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, stages, make_neuron, max_box: float
    ) -> None:
        super().__init__(input_shape, 1, stages, make_neuron)
        del self.flatten, self.fc, self.fc_neuron
        width = int(stages[-1][0])
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(s) for s in input_shape)
        self.max_box = float(max_box)
        self.head = layer.Conv2d(width, HEAD_FIELDS + self.num_classes, 1, bias=False)
        self.head_bn = layer.BatchNorm2d(HEAD_FIELDS + self.num_classes)
        self.head_neuron = make_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head_neuron(self.head_bn(self.head(x)))

    def wiring(self, input_shape: Sequence[int]) -> tuple[SynapseLayer, ...]:
        """The backbone's layers (:meth:`SEWResNet.wiring`) then the head conv, which reads the
        last residual stream (``1 + blocks`` ADDed sources) and writes the output."""
        backbone = _backbone_wiring(self, input_shape)
        stream, in_shape = backbone[-1].out_space, backbone[-1].out_shape
        sources = 1 + len(self.stages[-1].blocks)
        head = self._conv_wiring(
            "",
            "head",
            "head_bn",
            "head_neuron",
            in_shape,
            (int(self.head.out_channels), *in_shape[1:]),
            stream,
            None,
            sources,
        )
        return (*backbone, head)

    def _conv_wiring(self, prefix, conv, bn, neuron, in_shape, out_shape, in_space, out_space, n):
        """As :meth:`SEWResNet._conv_wiring`; an empty ``prefix`` names a top-level module."""
        if prefix:
            return super()._conv_wiring(
                prefix, conv, bn, neuron, in_shape, out_shape, in_space, out_space, n
            )
        has_bn = isinstance(self.get_submodule(bn), torch.nn.BatchNorm2d)
        return SynapseLayer(
            conv,
            "conv",
            tuple(in_shape),
            tuple(out_shape),
            bn if has_bn else None,
            neuron,
            in_space,
            out_space,
            int(n),
        )

    def conv_batchnorm_pairs(self) -> list[tuple[str, str]]:
        return [*super().conv_batchnorm_pairs(), ("head", "head_bn")]

    @property
    def grid(self) -> tuple[int, int]:
        """``(G_h, G_w)`` cells of the output."""
        _, h, w = self.image_shape
        factor = 2 ** (len(self.stages) - 1)
        return math.ceil(h / factor), math.ceil(w / factor)


def _backbone_wiring(model: SpikingDetector, input_shape: Sequence[int]):
    """:meth:`SEWResNet.wiring` without its readout (a detector has none)."""
    layers: list[SynapseLayer] = []
    shape = tuple(int(s) for s in input_shape)
    stream, sources = None, 1
    for k, stage in enumerate(model.stages):
        prefix = f"stages.{k}"
        k_, s_, p_ = (
            stage.conv.kernel_size[0],
            int(stage.conv.stride[0]),
            int(stage.conv.padding[0]),
        )
        out = (
            int(stage.conv.out_channels),
            (shape[1] + 2 * p_ - k_) // s_ + 1,
            (shape[2] + 2 * p_ - k_) // s_ + 1,
        )
        layers.append(
            model._conv_wiring(prefix, "conv", "bn", "neuron", shape, out, stream, prefix, sources)
        )
        for j, sew_block in enumerate(stage.blocks):
            block = f"{prefix}.blocks.{j}"
            inner = (int(sew_block.conv1.out_channels), *out[1:])
            layers.append(
                model._conv_wiring(
                    block, "conv1", "bn1", "neuron1", out, inner, prefix, block, 1 + j
                )
            )
            layers.append(
                model._conv_wiring(block, "conv2", "bn2", "neuron2", inner, out, block, prefix, 1)
            )
        shape, stream, sources = out, prefix, 1 + len(stage.blocks)
    return layers


def build_detector(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    stages: Sequence[tuple[int, int]] = DETECTOR_DEFAULT_STAGES,
    neuron: str = "lif",
    tau: float = 2.0,
    v_threshold: float = 1.0,
    max_box: float = 0.5,
    seed: int = 0,
) -> SpikingDetector:
    """A :class:`SpikingDetector` in multi-step mode (weights from a forked RNG seeded ``seed``).

    ``max_box`` is the largest box side as a fraction of the image side (``M`` in the module
    docstring). Raises :class:`ModelError` for bad stages, a non-image input or ``max_box``
    outside ``(0, 1]``.
    """
    _check_sew_args(input_shape, stages)
    if not 0 < max_box <= 1:
        raise ModelError(
            "max_box must lie in (0, 1] (fraction of the image side)",
            where="model detector",
            field="max_box",
            value=max_box,
        )
    make = neuron_factory(neuron, tau, v_threshold)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpikingDetector(input_shape, num_classes, tuple(stages), make, max_box)
    functional.set_step_mode(model, "m")
    return model


def build_detector_from_spec(input_shape, num_classes, neuron, tau, v_threshold, hidden):
    """``build_model("detector", ...)``: ``hidden`` gives one single-block stage per width."""
    stages = {} if hidden is None else {"stages": tuple((int(w), 1) for w in hidden)}
    return build_detector(
        input_shape, num_classes, neuron=neuron, tau=tau, v_threshold=v_threshold, **stages
    )


# --------------------------------------------------------------------------------------------
# Targets, loss and decoding


def _geometry(model: SpikingDetector):
    _, h, w = model.image_shape
    g_h, g_w = model.grid
    return h, w, g_h, g_w, h / g_h, w / g_w, model.max_box * h, model.max_box * w


def encode_targets(model: SpikingDetector, boxes: torch.Tensor, labels: torch.Tensor):
    """Per-cell targets of a batch: ``(responsible [B, G_h, G_w] bool, box [B, 4, G_h, G_w],
    class [B, G_h, G_w] int64)`` from padded ``boxes [B, M, 4]`` (xyxy px) and ``labels [B, M]``
    (``-1`` = padding)."""
    h, w, g_h, g_w, s_h, s_w, m_h, m_w = _geometry(model)
    batch = boxes.shape[0]
    responsible = torch.zeros(batch, g_h, g_w, dtype=torch.bool)
    box_target = torch.zeros(batch, 4, g_h, g_w)
    class_target = torch.zeros(batch, g_h, g_w, dtype=torch.int64)
    for b in range(batch):
        for box, label in zip(boxes[b], labels[b], strict=True):
            if int(label) < 0:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            j, i = min(int(cx / s_w), g_w - 1), min(int(cy / s_h), g_h - 1)
            responsible[b, i, j] = True
            values = (cx / s_w - j, cy / s_h - i, (x1 - x0) / m_w, (y1 - y0) / m_h)
            box_target[b, :, i, j] = torch.tensor(values).clamp(0.0, 1.0)
            class_target[b, i, j] = int(label)
    return responsible, box_target, class_target


def detection_loss(
    model: SpikingDetector,
    spikes: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    weights: DetectionLossWeights | None = None,
) -> torch.Tensor:
    """The loss of the module docstring for output ``spikes [T, B, 5 + K, G_h, G_w]``."""
    weights = weights or DetectionLossWeights()
    rates = spikes.mean(dim=0)
    responsible, box_target, class_target = encode_targets(model, boxes, labels)
    responsible = responsible.to(rates.device)
    obj = rates[:, 0]
    batch = rates.shape[0]
    loss_obj = ((obj - 1.0) ** 2)[responsible].sum()
    loss_noobj = (obj**2)[~responsible].sum()
    box_error = ((rates[:, 1:HEAD_FIELDS] - box_target.to(rates.device)) ** 2).sum(dim=1)
    onehot = torch.nn.functional.one_hot(class_target, model.num_classes).permute(0, 3, 1, 2)
    class_error = ((rates[:, HEAD_FIELDS:] - onehot.to(rates.device)) ** 2).sum(dim=1)
    total = (
        weights.obj * loss_obj
        + weights.noobj * loss_noobj
        + weights.box * box_error[responsible].sum()
        + weights.cls * class_error[responsible].sum()
    )
    return total / batch


def decode(
    model: SpikingDetector,
    spikes: torch.Tensor,
    *,
    conf: float = 0.1,
    iou: float = 0.5,
) -> list[dict[str, torch.Tensor]]:
    """Detections per scene, ``{"boxes": [n, 4] xyxy px, "scores": [n], "labels": [n]}``,
    from output ``spikes [T, B, 5 + K, G_h, G_w]`` (module docstring)."""
    h, w, g_h, g_w, s_h, s_w, m_h, m_w = _geometry(model)
    rates = spikes.detach().float().mean(dim=0).cpu()
    rows = torch.arange(g_h).view(g_h, 1).expand(g_h, g_w)
    cols = torch.arange(g_w).view(1, g_w).expand(g_h, g_w)
    out = []
    for r in rates:
        class_rate, label = r[HEAD_FIELDS:].max(dim=0)
        score = r[0] * class_rate
        cx, cy = (cols + r[1]) * s_w, (rows + r[2]) * s_h
        bw, bh = r[3] * m_w, r[4] * m_h
        boxes = torch.stack(
            [
                (cx - bw / 2).clamp(0, w),
                (cy - bh / 2).clamp(0, h),
                (cx + bw / 2).clamp(0, w),
                (cy + bh / 2).clamp(0, h),
            ],
            dim=-1,
        ).reshape(-1, 4)
        score, label = score.reshape(-1), label.reshape(-1)
        keep = score > conf
        keep_idx = _nms(boxes[keep], score[keep], label[keep], iou)
        out.append(
            {
                "boxes": boxes[keep][keep_idx],
                "scores": score[keep][keep_idx],
                "labels": label[keep][keep_idx],
            }
        )
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``[len(a), len(b)]`` of xyxy boxes (area = (x1-x0)(y1-y0))."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(union))


def _nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float):
    """Greedy per-class NMS: indices kept, highest score first."""
    order = torch.argsort(scores, descending=True, stable=True)
    kept: list[int] = []
    for index in order.tolist():
        same = [k for k in kept if int(labels[k]) == int(labels[index])]
        if same and box_iou(boxes[index : index + 1], boxes[same]).max() > iou:
            continue
        kept.append(index)
    return torch.tensor(kept, dtype=torch.int64)
