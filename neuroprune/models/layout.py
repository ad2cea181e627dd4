"""Memory layout of conv activations for training on the CPU (layer L3).

oneDNN's CPU convolutions run much faster on channels-last (NHWC) activations than on NCHW
ones, above all in the backward pass (docs/benchmarks.md, "Python 3.12 / SpikingJelly 2
against the 3.10 stack: training"). A convolution runs channels-last when its input or its
weight has channels-last strides, and then returns channels-last output; BatchNorm, pooling and
the strict neurons (:mod:`neuroprune.models.neurons`, whose buffers copy their input's layout)
keep the layout, so a conv stack stays channels-last once its first convolution is. Two ways to
start it, neither of which changes a value or an element's logical index:

* :func:`channels_last_sequence`: an input batch ``[T, B, C, H, W]`` stored as
  ``[T, B, H, W, C]`` (the training loop does this on the CPU);
* :func:`tag_channels_last`: a conv weight with one input channel per group has the same
  memory order in both layouts; it gets the channels-last strides over the same memory. This
  starts the layout for one-channel images, which cannot carry it themselves (SpikingJelly's
  ``flatten(0, 1)`` of ``[T, B]`` resets the stride of the size-1 channel dimension).

Parameters are otherwise left as they are: moving a weight with several input channels to
channels-last would reorder its flat memory, which code indexing ``param.view(-1)`` (the
quantization-aware training's projections) relies on.
"""

from __future__ import annotations

import torch

CHANNELS_LAST = torch.channels_last


def channels_last_sequence(x_seq: torch.Tensor) -> torch.Tensor:
    """``x_seq`` ``[T, B, C, H, W]`` with every step's ``[B, C, H, W]`` in channels-last memory
    order (same values and shape); any other tensor, or one channel, is returned unchanged."""
    if x_seq.dim() != 5 or x_seq.shape[2] == 1:
        return x_seq
    return x_seq.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def tag_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Give every ``Conv2d`` weight with one input channel per group channels-last strides over
    its own memory (no copy: with one input channel both layouts order the elements alike, and
    the tensor stays contiguous, so ``view(-1)`` still works). Returns ``model``."""
    for module in model.modules():
        if not isinstance(module, torch.nn.Conv2d):
            continue
        weight = module.weight
        if weight.shape[1] != 1 or not weight.is_contiguous():
            continue
        height, width = weight.shape[2:]
        strides = (height * width, 1, width, 1)
        if weight.stride() != strides:
            with torch.no_grad():
                weight.data = weight.data.as_strided(weight.shape, strides)
    return model
