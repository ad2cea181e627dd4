"""Cost of a quantization-aware fine-tuning epoch against a float fine-tuning epoch.

For each hidden shape, one model (trained 1 epoch, then pruned by magnitude to ``--keep`` of its
synapses, then quantized for the chip) is fine-tuned for one epoch in three ways, alternating
``--repeats`` times in one process, minimum epoch time kept:

* ``float``: the pruned float model (float strict LIF neurons, mask kept by zero gradients);
* ``qat``: the quantized model with the QAT projection (kept synapses only, weights' dtype)
  and float neurons;
* ``chip``: the same with the chip's integer neuron arithmetic (what ``fit`` runs for a chip
  that declares ``neuron.arithmetic``).

Epoch = one pass over the training split as ``models.train.train`` runs it (its per-epoch test
evaluation included). Ratios are to ``float``.

Example::

    python benchmarks/qat_overhead.py --shapes 128 512,256 1024,1024 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time

import torch
from common import machine  # noqa: E402  (benchmarks/common.py)

from neuroprune.chip.profiles import load_profile
from neuroprune.data.datasets import load_dataset
from neuroprune.models.zoo import build_model
from neuroprune.quantize.chip import use_chip_arithmetic
from neuroprune.quantize.model import ptq_model
from neuroprune.quantize.qat import QuantAwareCallback
from neuroprune.train.loop import Callback, default_config, train


class KeepMask(Callback):
    """Float fine-tuning with a frozen pruning mask (zero gradients at pruned weights)."""

    def __init__(self, model) -> None:
        self.pairs = [(m.weight, m.weight != 0) for m in model.modules() if _is_synapse(m)]

    def before_step(self) -> None:
        for weight, mask in self.pairs:
            if weight.grad is not None:
                weight.grad.mul_(mask)


def _is_synapse(m) -> bool:
    return isinstance(m, torch.nn.Linear | torch.nn.Conv2d)


def prune_by_magnitude(model, keep: float) -> None:
    with torch.no_grad():
        for m in model.modules():
            if _is_synapse(m):
                flat = m.weight.abs().flatten()
                k = max(1, int(keep * flat.numel()))
                cut = flat.kthvalue(flat.numel() - k + 1).values
                m.weight.mul_(m.weight.abs() >= cut)


def variants(hidden, data, config, keep: float):
    """name -> (model, layers or None): the three set-ups (module docstring)."""
    profile = load_profile("loihi")
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=hidden, seed=0)
    train(model, data, config.replace(epochs=1))
    prune_by_magnitude(model, keep)
    qmodel, layers = ptq_model(model, profile, data.input_shape)
    chip_model, chip_layers = copy.deepcopy((qmodel, layers))
    chip_layers, _, _ = use_chip_arithmetic(
        chip_model, chip_layers, profile, analog_images=data.x_train
    )
    return profile, {
        "float": (model, None),
        "qat": (qmodel, layers),
        "chip": (chip_model, chip_layers),
    }


def epoch_seconds(setup, profile, data, config) -> float:
    """One fine-tuning epoch of a fresh copy of ``setup``."""
    model, layers = copy.deepcopy(setup)
    callback = KeepMask(model) if layers is None else QuantAwareCallback(layers, profile)
    start = time.perf_counter()
    train(model, data, config.replace(epochs=1), callbacks=(callback,))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["128", "512,256", "1024,1024"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=float, default=0.3, help="fraction of synapses kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits")
    config = default_config(seed=0)
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"machine: {machine(1)}")
    print("| hidden | float s/epoch | QAT s/epoch | ratio | QAT + chip neurons s/epoch | ratio |")
    print("|---|---|---|---|---|---|")
    for text in args.shapes:
        hidden = tuple(int(h) for h in text.split(","))
        profile, setups = variants(hidden, data, config, args.keep)
        best = {name: float("inf") for name in setups}
        for _ in range(args.repeats):
            for name, setup in setups.items():
                best[name] = min(best[name], epoch_seconds(setup, profile, data, config))
        f, q, c = best["float"], best["qat"], best["chip"]
        print(f"| {text} | {f:.3f} | {q:.3f} | {q / f:.2f}x | {c:.3f} | {c / f:.2f}x |")


if __name__ == "__main__":
    main()
