"""Cores used by the packer against a lower bound, before (next-fit in layer order, the packer
before issue 11) and after (the best of next-fit, first-fit and first-fit decreasing), per chip.

Lower bound: max over per-core resources of ceil(total / per-core capacity)
(:meth:`neuroprune.chip.capacity.CapacityModel.cores_lower_bound`: neurons, input axons counted once
per consuming layer, synaptic memory at the dense-form cost per synapse).

Networks are pruned-like masks (seeded): each neuron keeps a random subset of its inputs, at
most the chip's per-neuron input cap (the budget's, :meth:`CapacityModel.neuron_input_cap`).

    python benchmarks/packing.py            # prints a Markdown table
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import machine

from neuroprune.chip.capacity import capacity_model
from neuroprune.chip.profile_reader import parse_profile
from neuroprune.chip.profiles import load_profile
from neuroprune.core.summary import NetworkSummary, conv_layer, dense_layer
from neuroprune.fit.allocation import thinned
from neuroprune.fit.rules import check_fit

CHIPS = (
    "loihi",
    "loihi2",
    "truenorth",
    "tianjic",
    "brainscales2",
    "dynapse",
    "spinnaker",
    "user_crossbar",
)


def mlp(widths: tuple[int, ...], seed: int = 0) -> NetworkSummary:
    rng = np.random.default_rng(seed)
    layers = tuple(
        dense_layer(f"fc{i}", rng.normal(size=(n_out, n_in)))
        for i, (n_in, n_out) in enumerate(zip(widths, widths[1:], strict=False))
    )
    return NetworkSummary(
        layers, input_shape=(widths[0],), name="mlp " + "-".join(map(str, widths))
    )


def small_conv(seed: int = 0) -> NetworkSummary:
    rng = np.random.default_rng(seed)
    c1 = conv_layer("conv0", rng.normal(size=(8, 1, 3, 3)), (1, 8, 8), stride=1, padding=1)
    c2 = conv_layer("conv1", rng.normal(size=(16, 8, 3, 3)), (8, 8, 8), stride=2, padding=1)
    fc = dense_layer("fc2", rng.normal(size=(10, 16 * 4 * 4)))
    return NetworkSummary((c1, c2, fc), input_shape=(1, 8, 8), name="conv 8-16 on 8x8")


def mnist_shaped(seed: int = 0) -> NetworkSummary:
    """784-128-10, fan-in 100 per neuron, hidden neurons reading the central 24 x 24 pixels
    (the issue-11 crossbar case; tests/test_fit_recount.py builds the same network)."""
    rng = np.random.default_rng(seed)
    centre = np.array([r * 28 + c for r in range(2, 26) for c in range(2, 26)])
    w0 = np.zeros((128, 784))
    for i in range(128):
        w0[i, rng.choice(centre, 100, replace=False)] = 1
    w1 = np.zeros((10, 128))
    for i in range(10):
        w1[i, rng.choice(128, 100, replace=False)] = 1
    return NetworkSummary((dense_layer("fc0", w0), dense_layer("fc1", w1)), input_shape=(784,))


USER_CROSSBAR = {
    "schema_version": 1,
    "id": "user_crossbar",
    "name": "issue-11 user dense_matrix chip",
    "chip": {"cores": 8, "neurons_max": 2048},
    "core": {
        "neurons_max": 256,
        "synapse_memory_bits": 98304,
        "synapse_encoding": {"kind": "dense_matrix", "bits_per_synapse": 6},
    },
    "neuron": {"models": ["LIF"], "fan_in_max": 100},
    "weights": {"bits": 6},
}


def chip_profile(chip: str):
    return parse_profile(USER_CROSSBAR) if chip == "user_crossbar" else load_profile(chip)


NETWORKS = {
    "mlp 64-128-10 (d=0.3)": (lambda: mlp((64, 128, 10)), 0.3),
    "mlp 64-512-256-10 (d=0.1)": (lambda: mlp((64, 512, 256, 10)), 0.1),
    "mlp 784-128-10 (d=0.1)": (lambda: mlp((784, 128, 10)), 0.1),
    "conv 8-16 (d=0.5)": (small_conv, 0.5),
    "mnist-shaped 784-128-10 (fan-in 100)": (mnist_shaped, 1.0),
}


def row(net_name: str, chip: str) -> dict:
    build, density = NETWORKS[net_name]
    profile = chip_profile(chip)
    model = capacity_model(profile)
    net = thinned(build(), density, seed=1, cap=model.neuron_input_cap())
    before = check_fit(net, profile, strategy="next_fit", chips=64)
    start = time.perf_counter()
    after = check_fit(net, profile, chips=64)
    seconds = time.perf_counter() - start
    return {
        "network": net_name,
        "chip": chip,
        "bound": model.cores_lower_bound(net),
        "before": before.cores_used,
        "after": after.cores_used,
        "strategy": after.packing.strategy,
        "fits_before": before.fits,
        "fits_after": after.fits,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", default=",".join(CHIPS))
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    print(
        "| network | chip | lower bound | before (next-fit) | after (best) | strategy | "
        "after / bound | pack s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for net_name in NETWORKS:
        for chip in args.chips.split(","):
            r = row(net_name, chip)
            print(
                f"| {r['network']} | {r['chip']} | {r['bound']} | {r['before']} | "
                f"{r['after']} | {r['strategy']} | {r['after'] / r['bound']:.2f} | "
                f"{r['seconds']:.2f} |"
            )


if __name__ == "__main__":
    main()
