"""Benchmark: Lava vs reference simulation time per sample on digits (mlp and conv, pruned).

For each model (``mlp`` 64-128-10, ``conv`` 8-16 channels, the zoo defaults) the script trains
the dense net briefly on digits, prunes every layer by magnitude to each sparsity and fine-tunes
one epoch with the zeros held (accuracy is not the point here), quantizes to Loihi for the fixed-point rows,
exports to NIR and simulates the test split on both backends. Lava's figure is the wall time of
the whole worker (interpreter start, Lava import, build, compile, run, stop) divided by the
samples; ``agree`` is Lava's per-layer spike-count agreement with the reference (min over
layers, fraction of samples whose every neuron count matches).

Usage::

    PYTHONPATH=. python benchmarks/simulate.py                  # 360 samples, both modes
    PYTHONPATH=. python benchmarks/simulate.py --samples 200 --models mlp --modes float

Prints a Markdown table with the command and the machine (nothing is written to disk except a
temporary directory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine  # noqa: E402  (benchmarks/common.py)

from neuroprune.chip.profiles import load_profile
from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode
from neuroprune.export import export_nir
from neuroprune.models.zoo import build_model
from neuroprune.quantize.model import ptq_model
from neuroprune.sim import simulate
from neuroprune.train.loop import Callback, TrainConfig, train

SPARSITIES = (0.0, 0.9, 0.99)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=360, help="test samples (max 360)")
    parser.add_argument("--models", default="mlp,conv")
    parser.add_argument("--modes", default="float,fixed")
    parser.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    parser.add_argument("--epochs", type=int, default=3, help="dense training epochs")
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--encoding", default="direct", choices=("direct", "poisson"))
    parser.add_argument("--repeats", type=int, default=1, help="Lava runs per row (median)")
    return parser.parse_args(argv)


def trained(spec: str, dataset, args) -> torch.nn.Module:
    """The zoo model trained for ``args.epochs`` on digits."""
    model = build_model(spec, dataset.input_shape, dataset.num_classes, seed=0)
    config = TrainConfig(epochs=args.epochs, timesteps=args.timesteps, encoding=args.encoding)
    train(model, dataset, config)
    return model.eval()


class HoldZeros(Callback):
    """Re-applies the pruning masks after every optimizer step."""

    def __init__(self, masks: dict[torch.Tensor, torch.Tensor]) -> None:
        self.masks = masks

    def after_step(self, iteration: int, lr: float) -> None:
        with torch.no_grad():
            for weight, mask in self.masks.items():
                weight.mul_(mask)


def pruned(model: torch.nn.Module, sparsity: float, dataset, args) -> torch.nn.Module:
    """A copy with the smallest ``sparsity`` fraction of every layer's weights set to 0,
    fine-tuned for one epoch with the zeros held."""
    import copy

    out = copy.deepcopy(model)
    if sparsity <= 0:
        return out
    masks = {}
    with torch.no_grad():
        for module in out.modules():
            weight = getattr(module, "weight", None)
            if weight is None or weight.dim() < 2:
                continue
            k = int(round(sparsity * weight.numel()))
            cut = weight.abs().flatten().kthvalue(max(k, 1)).values
            masks[weight] = (weight.abs() > cut).to(weight.dtype)
            weight.mul_(masks[weight])
    config = TrainConfig(epochs=1, timesteps=args.timesteps, encoding=args.encoding)
    train(out, dataset, config, callbacks=(HoldZeros(masks),))
    return out.eval()


def timed_lava(path: Path, x: np.ndarray, fixed: bool, repeats: int, model):
    """Float: compared with the SpikingJelly model itself; fixed: with the bit-exact emulation
    (and the float model's drift reported alongside)."""
    expected = "reference" if fixed else None
    runs = [
        simulate(
            path,
            x=x,
            backend="lava",
            fixed_point=fixed,
            expected_counts=expected,
            reference_model=model,
        )
        for _ in range(repeats)
    ]
    best = runs[0]
    return best, statistics.median(r.seconds_per_sample for r in runs)


def rows_for(spec: str, dataset, args, work: Path, profile) -> list[list[str]]:
    model = trained(spec, dataset, args)
    x = encode(dataset.x_test[: args.samples], args.timesteps, args.encoding)
    rows = []
    for sparsity in (float(s) for s in args.sparsities.split(",")):
        sparse = pruned(model, sparsity, dataset, args)
        for mode in args.modes.split(","):
            fixed = mode == "fixed"
            net = ptq_model(sparse, profile, dataset.input_shape)[0] if fixed else sparse
            path = export_nir(
                net,
                work / f"{spec}_{sparsity}_{mode}.nir",
                timesteps=args.timesteps,
                encoding=args.encoding,
                input_shape=dataset.input_shape,
            )
            ref = simulate(
                path, x=x, y=dataset.y_test[: args.samples], backend="reference", fixed_point=fixed
            )
            lava, lava_s = timed_lava(path, x, fixed, args.repeats, net)
            rows.append(
                [
                    spec,
                    f"{100 * sparsity:.0f} %",
                    mode,
                    str(sum(ref.layer_neurons)),
                    f"{ref.synops_per_sample:.0f}",
                    f"{1e3 * lava_s:.2f}",
                    f"{1e3 * ref.seconds_per_sample:.3f}",
                    f"{100 * lava.spike_agreement:.2f} %",
                    "—"
                    if lava.model_agreement is None
                    else f"{100 * min(lava.model_agreement):.2f} % / {100 * min(lava.model_count_agreement):.2f} %",
                    f"{100 * ref.accuracy:.1f} %",
                ]
            )
    return rows


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_dataset("digits")
    args.samples = min(args.samples, dataset.test_size)
    profile = load_profile("loihi")
    header = [
        "model",
        "sparsity",
        "mode",
        "neurons",
        "synops/sample",
        "Lava ms/sample",
        "reference ms/sample",
        "Lava agreement",
        "fixed vs float model (samples / neuron counts)",
        "accuracy",
    ]
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="np-bench-sim-") as tmp:
        for spec in args.models.split(","):
            rows += rows_for(spec, dataset, args, Path(tmp), profile)
    command = "PYTHONPATH=. python benchmarks/simulate.py " + " ".join(argv)
    print(
        f"### Simulation speed (digits test split, {args.samples} samples, T={args.timesteps}, "
        f"{args.encoding} encoding)\n"
    )
    print(f"Command: `{command.strip()}`  ")
    print(f"Machine: {machine()}  ")
    print(f"Total benchmark time: {time.perf_counter() - start:.0f} s\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
