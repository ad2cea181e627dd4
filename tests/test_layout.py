"""Channels-last activations on the CPU (models/layout.py) and their use by the training loop."""

from __future__ import annotations

import numpy as np
import torch

from neuroprune.data.dataset import Dataset
from neuroprune.models.layout import channels_last_sequence, tag_channels_last
from neuroprune.models.zoo import build_model
from neuroprune.train.loop import TrainConfig, model_input, train

torch.set_num_threads(1)


def _channels_last_strides(shape):
    """Strides of a contiguous ``[N, H, W, C]`` tensor, in ``[N, C, H, W]`` order."""
    _, c, h, w = shape
    return (h * w * c, 1, w * c, c)


def test_tagging_keeps_the_memory_and_makes_the_convolution_channels_last():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
    wide = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    before, pointer = conv.weight.detach().clone(), conv.weight.data_ptr()
    wide_strides = wide.weight.stride()
    tag_channels_last(torch.nn.Sequential(conv, wide))
    assert conv.weight.stride() == _channels_last_strides(conv.weight.shape)
    assert conv.weight.data_ptr() == pointer and torch.equal(conv.weight, before)
    assert conv.weight.view(-1).tolist() == before.flatten().tolist()  # flat order unchanged
    assert wide.weight.stride() == wide_strides  # more than one input channel: left alone
    x = torch.rand(2, 1, 6, 6)
    y = conv(x)
    assert y.stride() == _channels_last_strides(y.shape)
    expected = torch.nn.functional.conv2d(x, before, padding=1)
    torch.testing.assert_close(y, expected)


def test_channels_last_sequence_keeps_values_and_lays_each_step_out_channels_last():
    x = torch.rand(3, 2, 4, 5, 6)
    y = channels_last_sequence(x)
    assert torch.equal(x, y)
    steps = y.flatten(0, 1)
    assert steps.stride() == _channels_last_strides(steps.shape)
    one_channel, flat = torch.rand(3, 2, 1, 5, 5), torch.rand(3, 2, 7)
    assert channels_last_sequence(one_channel) is one_channel
    assert channels_last_sequence(flat) is flat


def test_training_on_the_cpu_runs_the_convolutions_channels_last():
    """train() tags a one-channel model's first convolution, so every conv output of the
    training steps and of the evaluation is channels-last."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 64).astype(np.int64)
    model = build_model("conv", (1, 8, 8), 10, seed=0)
    strides = []
    model[0].register_forward_hook(lambda _m, _a, out: strides.append(out.flatten(0, 1).stride()))
    train(model, Dataset("random", x, y, x[:16], y[:16], 10), TrainConfig(epochs=1))
    assert model[0].weight.stride() == _channels_last_strides(model[0].weight.shape)
    assert strides and set(strides) == {_channels_last_strides((1, 8, 8, 8))}


def test_model_input_stores_image_batches_channels_last_on_the_cpu():
    images = torch.rand(4, 3, 8, 8)
    batch = model_input(images, 2, "direct", None)
    assert torch.equal(batch, images.expand(2, -1, -1, -1, -1))
    assert batch.flatten(0, 1).stride() == _channels_last_strides((8, 3, 8, 8))
