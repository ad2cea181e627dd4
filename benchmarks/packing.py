"""Cores used by the packer against a lower bound, before (next-fit in layer order, the packer
before issue 11) and after (the best of next-fit, first-fit and first-fit decreasing), per chip.

Lower bound: max over per-core resources of ceil(total / per-core capacity)
(:meth:`neuroprune.chip.capacity.CapacityModel.cores_lower_bound`: neurons, input axons counted once
per consuming layer, synaptic memory at the dense-form cost per synapse).

Networks are pruned-like masks (seeded): each neuron keeps a random subset of its inputs, at
most the chip's per-neuron input cap (the budget's, :meth:`CapacityModel.neuron_input_cap`).

``--core-blocks`` (issue 23, item 5) trains instead: a 784-128-10 mlp on 28x28 data (the bundled
digits upsampled to 28x28 and written as MNIST IDX files, the largest data there is offline),
pruned to each chip's budget twice: before (unstructured: the projection's core blocks only
where fan-out is limited, as before issue 23) and after (core blocks in every dense layer on
chips whose cores share their input axons, :attr:`CapacityModel.shares_axons`: every crossbar
and dense-matrix chip). Cores used, the lower bound on that pruned network, and test accuracy
per seed. ``--validation F`` scores on a held-out fraction ``F`` of the training split instead
(for choosing settings; the test split is then not read) and ``--blocks-settle S`` overrides
when shared-input blocks reach their width (:data:`neuroprune.pruning.base.BLOCKS_SETTLE`).

    python benchmarks/packing.py                      # prints a Markdown table
    python benchmarks/packing.py --core-blocks --seeds 0 1 2
    python benchmarks/packing.py --core-blocks --validation 0.2 --chips truenorth --projections after --blocks-settle 1e-9
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

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
    chips = min(64, profile.chips_per_system_max or 64)  # TrueNorth systems hold 16
    before = check_fit(net, profile, strategy="next_fit", chips=chips)
    start = time.perf_counter()
    after = check_fit(net, profile, chips=chips)
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


# --------------------------------------------------------------------------------------------
# Core blocks on trained networks (issue 23, item 5)


def write_digits_28(folder: Path) -> Path:
    """The bundled digits upsampled to 28x28 as MNIST IDX files in ``folder``: each 8x8 pixel
    becomes 4x4 (32x32), the centre 28x28 is kept, values 0..16 scaled to 0..255; the digits'
    own 80/20 split. Returns ``folder``."""
    from neuroprune.data.datasets import load_dataset

    digits = load_dataset("digits")
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (
        ("train", digits.x_train, digits.y_train),
        ("t10k", digits.x_test, digits.y_test),
    ):
        big = np.kron(x[:, 0], np.ones((4, 4), np.float32))[:, 2:30, 2:30]
        images = np.clip(np.rint(big * 255.0), 0, 255).astype(np.uint8)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
    return folder


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, 0x08 (uint8), the number of dimensions, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def axon_sharing_chips() -> list[str]:
    """Shipped chips whose cores share input axons among their neurons (crossbar and
    dense-matrix capacity models)."""
    from neuroprune.chip.profiles import list_profiles

    return [p.id for p in list_profiles() if capacity_model(p).shares_axons]


def core_block_rows(args) -> list[dict]:
    """Per seed: train the dense 784-128-10 mlp once, then per chip prune it before (no
    shared-axon blocks) and after (the budget's core blocks), count cores and the bound."""
    import torch

    from neuroprune.data.datasets import load_dataset
    from neuroprune.fit.budget import derive_budget
    from neuroprune.models import summarize
    from neuroprune.models.zoo import build_model
    from neuroprune.pipeline.prune_loop import prune_to_budget
    from neuroprune.train.loop import default_config, train

    torch.set_num_threads(args.threads)
    import neuroprune.pruning.base as pruning_base

    if args.blocks_settle is not None:
        pruning_base.BLOCKS_SETTLE = args.blocks_settle  # read at each block refresh
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data_dir) if args.data_dir else write_digits_28(Path(tmp) / "d28")
        full = load_dataset("mnist", folder)
    rows = []
    for seed in args.seeds:
        dataset = validation_as_test(full, seed, args.validation) if args.validation else full
        config = default_config(
            "mlp", epochs=args.dense_epochs, timesteps=args.timesteps, seed=seed
        )
        dense = build_model(
            "mlp", dataset.input_shape, dataset.num_classes, hidden=(128,), seed=seed
        )
        train(dense, dataset, config)
        summary = summarize(dense, dataset.input_shape, args.timesteps)
        for chip in args.chips.split(","):
            profile = chip_profile(chip)
            model = capacity_model(profile)
            after = derive_budget(profile, summary)
            before = dataclasses.replace(after, input_blocks=model._fan_out_blocks(summary))
            chosen = (("before", before), ("after", after))
            for label, budget in (c for c in chosen if c[0] in args.projections.split(",")):
                result = prune_to_budget(
                    copy.deepcopy(dense),
                    dataset,
                    config,
                    method=args.method,
                    budget=budget,
                    epochs=args.prune_epochs,
                    finetune_epochs=args.finetune_epochs,
                )
                pruned = summarize(result.model, dataset.input_shape, args.timesteps)
                fit = check_fit(pruned, profile)
                rows.append(
                    {
                        "seed": seed,
                        "chip": chip,
                        "label": label,
                        "budget": budget.synapses,
                        "synapses": result.synapses,
                        "cores": fit.cores_used,
                        "bound": model.cores_lower_bound(pruned),
                        "copies": None if fit.copies is None else sum(fit.copies.values()),
                        "accuracy": result.accuracy,
                        "blocks": "; ".join(
                            b.describe(name) for name, b in budget.input_blocks.items()
                        ),
                    }
                )
                print(
                    f"  seed={seed} {chip} {label}: cores={rows[-1]['cores']} "
                    f"bound={rows[-1]['bound']} copies={rows[-1]['copies']} "
                    f"acc={result.accuracy:.4f}",
                    flush=True,
                )
    return rows


def validation_as_test(dataset, seed: int, fraction: float):
    """``dataset`` for choosing settings: trained on its training split less a held-out
    ``fraction`` (:func:`neuroprune.data.split.hold_out`, cut by ``seed``) and scored on that
    held-out part in place of the test split, which is not read."""
    from neuroprune.data.split import hold_out

    part = hold_out(dataset, seed=seed, fraction=fraction)
    return dataclasses.replace(part.train, x_test=part.x_val, y_test=part.y_val)


def core_block_table(rows: list[dict], scored: str = "test") -> str:
    """Markdown: per chip, before and after: cores (per seed), bound, cores / bound, neuron
    copies for fan-out (TrueNorth; "-" where the chip copies none), accuracy (mean and per
    seed), and the blocks the after budget used."""
    lines = [
        "| chip | projection | budget B | kept | cores (per seed) | lower bound (per seed) | "
        f"max cores / bound | copies (per seed) | {scored} accuracy % (mean; per seed) | "
        "core blocks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for chip in dict.fromkeys(r["chip"] for r in rows):
        for label in ("before", "after"):
            group = [r for r in rows if r["chip"] == chip and r["label"] == label]
            if not group:
                continue
            accs = [100 * r["accuracy"] for r in group]
            ratio = max(r["cores"] / r["bound"] for r in group)
            lines.append(
                f"| {chip} | {label} | {group[0]['budget']} | "
                f"{'/'.join(str(r['synapses']) for r in group)} | "
                f"{'/'.join(str(r['cores']) for r in group)} | "
                f"{'/'.join(str(r['bound']) for r in group)} | {ratio:.2f} | "
                f"{'/'.join('-' if r['copies'] is None else str(r['copies']) for r in group)} | "
                f"{statistics.fmean(accs):.2f}; {' / '.join(f'{a:.2f}' for a in accs)} | "
                f"{group[0]['blocks'] or 'none'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", default=None, help="comma list (default: see the docstring)")
    parser.add_argument("--core-blocks", action="store_true", help="trained core-block table")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder (default: digits 28)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--method", default="stds")
    parser.add_argument("--dense-epochs", type=int, default=10)
    parser.add_argument("--prune-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--projections", default="before,after", help="which of before,after")
    parser.add_argument(
        "--validation",
        type=float,
        default=0.0,
        help="score on this held-out fraction of the training split instead of the test split",
    )
    parser.add_argument(
        "--blocks-settle",
        type=float,
        default=None,
        help="override pruning.base.BLOCKS_SETTLE (tiny: blocks at their width from step 1)",
    )
    args = parser.parse_args()
    if args.core_blocks:
        args.chips = args.chips or ",".join(axon_sharing_chips())
        started = time.perf_counter()
        rows = core_block_rows(args)
        print(f"machine: {machine(args.threads)}; wall time {time.perf_counter() - started:.0f} s")
        print(core_block_table(rows, "validation" if args.validation else "test"))
        return
    args.chips = args.chips or ",".join(CHIPS)
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
