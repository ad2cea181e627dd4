"""BrainScaleS synapse rows: counted per layer vs per input, and the one-sign-per-input projection.

On BrainScaleS the sign belongs to the synapse row, so an input takes one row per sign its
synapses on a core use. For each seed the demo mlp is trained once; then, for every chip, it is
pruned to the same budget twice with the chip's structure (fan-in cap, core blocks): as usual,
and with ``Budget.one_sign_per_input`` (each input keeps the synapses of one sign, the blocks
and the fan-in cap anticipate 1 row per input). Each pruned model is quantized (PTQ, then
``--qat-epochs`` of quantization-aware fine-tuning kept only if it beats PTQ on validation) and
its deployed model is packed by the fit check, once with rows counted per input and core (this
code) and once with the old per-layer rule (2 rows for every input of a layer as soon as one
input is mixed, emulated by dropping the signs from the summary). The choice between the two
prunings is made by fit arithmetic (fewer cores) and validation accuracy (not lower), never the
test split::

    python benchmarks/brainscales_rows.py --seeds 0 1 2 --out docs/benchmarks/brainscales_rows.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import shlex
import sys
import time
from dataclasses import replace

import torch
from common import machine, mean_std, publish  # noqa: E402  (benchmarks/common.py)

from neuroprune.chip.profiles import load_profile
from neuroprune.core.summary import NetworkSummary
from neuroprune.data.datasets import load_dataset
from neuroprune.fit.budget import derive_budget
from neuroprune.fit.rules import check_fit
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import prune_to_budget
from neuroprune.quantize import quantize_model
from neuroprune.train.loop import default_config, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chips", nargs="+", default=["brainscales", "brainscales2"])
    parser.add_argument("--hidden", default="512,256")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dense-epochs", type=int, default=10)
    parser.add_argument("--prune-epochs", type=int, default=6)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def unsigned(summary: NetworkSummary) -> NetworkSummary:
    """The summary without its signs: the capacity model falls back to the per-layer rule
    (every used input takes ``row_duplication`` rows, 2 as soon as one input is mixed)."""
    return replace(summary, layers=tuple(replace(layer, negative=None) for layer in summary.layers))


def packed(summary: NetworkSummary, profile, chips: int) -> tuple[int, int, bool]:
    """(cores used, synapse rows over all cores, fits) for ``chips`` chips."""
    report = check_fit(summary, profile, chips=chips)
    rows = sum(core.input_axons for core in report.packing.cores)
    return report.cores_used, rows, report.fits


def mixed_inputs(summary: NetworkSummary) -> int:
    """Inputs (over all layers) whose synapses use both signs."""
    return sum(int((layer.rows_per_input() == 2).sum()) for layer in summary.layers)


def run_seed(args, dataset, seed: int) -> list[dict]:
    hidden = tuple(int(w) for w in args.hidden.split(","))
    config = default_config("mlp", epochs=args.dense_epochs, timesteps=args.timesteps, seed=seed)
    dense = build_model("mlp", dataset.input_shape, dataset.num_classes, hidden=hidden, seed=seed)
    train(dense, dataset, config)
    summary = summarize(dense, dataset.input_shape, args.timesteps)
    rows = []
    for chip in args.chips:
        profile = load_profile(chip)
        chips = max(1, math.ceil(summary.neurons / profile.neurons_max))
        for one_sign in (False, True):
            budget = derive_budget(
                profile, summary, chips=chips, sparsity=args.sparsity, one_sign_per_input=one_sign
            )
            pruned = prune_to_budget(
                copy.deepcopy(dense),
                dataset,
                config,
                method="gmp",
                budget=budget,
                epochs=args.prune_epochs,
                finetune_epochs=args.finetune_epochs,
            )
            result = quantize_model(
                pruned.model, profile, dataset, config, finetune_epochs=args.qat_epochs
            )
            kept = result.qat.get("decision") == "kept"
            deployed = summarize(result.model, dataset.input_shape, args.timesteps)
            cores, rows_used, fits = packed(deployed, profile, chips * 4)
            old_cores, old_rows, old_fits = packed(unsigned(deployed), profile, chips * 4)
            row = {
                "seed": seed,
                "chip": profile.id,
                "one_sign": one_sign,
                "budget": budget.synapses,
                "fan_in_cap": budget.fan_in_cap,
                "synapses": deployed.synapses(),
                "float": pruned.accuracy,
                "val": result.qat["val_qat"] if kept else result.qat["val_ptq"],
                "test": result.accuracy_qat if kept else result.accuracy_ptq,
                "mixed": mixed_inputs(deployed),
                "cores": cores,
                "rows": rows_used,
                "fits": fits,
                "old_cores": old_cores,
                "old_rows": old_rows,
                "old_fits": old_fits,
            }
            rows.append(row)
            print(f"  {row}", file=sys.stderr)
    return rows


def decisions(rows: list[dict]) -> list[str]:
    """Per (seed, chip): one-sign pruning kept iff it uses fewer cores and validates no worse."""
    out = []
    for seed, chip in dict.fromkeys((r["seed"], r["chip"]) for r in rows):
        plain, signed = (
            next(r for r in rows if (r["seed"], r["chip"], r["one_sign"]) == (seed, chip, s))
            for s in (False, True)
        )
        take = signed["cores"] < plain["cores"] and signed["val"] >= plain["val"]
        out.append(
            f"- seed {seed}, {chip}: {'one sign per input' if take else 'usual pruning'} "
            f"(cores {plain['cores']} -> {signed['cores']}, validation "
            f"{100 * plain['val']:.1f} -> {100 * signed['val']:.1f} %)"
        )
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| chip | pruning | budget B | fan-in cap | mixed-sign inputs | rows, per layer -> per "
        "input | cores, per layer -> per input | validation (%) | test (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for chip, one_sign in dict.fromkeys((r["chip"], r["one_sign"]) for r in rows):
        group = [r for r in rows if (r["chip"], r["one_sign"]) == (chip, one_sign)]

        def span(key: str, group=group) -> str:
            values = [r[key] for r in group]
            return f"{min(values)}..{max(values)}" if min(values) != max(values) else f"{values[0]}"

        lines.append(
            f"| {chip} | {'one sign per input' if one_sign else 'usual'} | {span('budget')} | "
            f"{span('fan_in_cap')} | {span('mixed')} | {span('old_rows')} -> {span('rows')} | "
            f"{span('old_cores')} -> {span('cores')} | {mean_std([r['val'] for r in group])} | "
            f"{mean_std([r['test'] for r in group])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = load_dataset("digits")
    started = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(args, dataset, seed)]
    command = "python benchmarks/brainscales_rows.py " + shlex.join(sys.argv[1:])
    text = "\n".join(
        [
            "# BrainScaleS rows per input and the one-sign-per-input projection",
            "",
            f"- command: `{command}`",
            f"- machine: {machine(args.threads)}",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; wall time "
            f"{time.perf_counter() - started:.0f} s",
            f"- digits, mlp 64-{args.hidden.replace(',', '-')}-10, gmp to sparsity "
            f"{args.sparsity} with the chip's structure, {args.qat_epochs} QAT epochs; seeds "
            + ", ".join(map(str, args.seeds)),
            "",
            table(rows),
            "",
            *decisions(rows),
            "",
        ]
    )
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
