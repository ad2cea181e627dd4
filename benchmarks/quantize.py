"""Pruned float vs quantized + fine-tuned accuracy per chip weight format.

For each model and seed: train the dense model, prune a copy to ``B = floor((1 - S) * dense
synapses)`` with :func:`neuroprune.pruning.prune_to_budget`, then for every chip quantize it
with :func:`neuroprune.quantize.quantize_model` (post-training quantization, then
``--qat-epochs`` of quantization-aware fine-tuning with the pruning mask kept). Records the
test accuracy of the pruned float model, after PTQ and after fine-tuning, the nonzero weights
before/after and the largest clipped fraction, and prints a Markdown table with the exact
command and the machine. As a control, the pruned float model is fine-tuned for the same
``--qat-epochs`` with its mask frozen ("float + same epochs"), so the gain of fine-tuning is not
mistaken for a quantization effect.

Default chips: every shipped profile (``--chips all``; ``--neuron if`` trains IF neurons). Each row also gives the budget ``B``
(the exact projection keeps ``B`` synapses), the nonzero weights after quantization against it,
and the quantization-aware fine-tune's decision (kept or reverted on validation) with the
deployed model's accuracy (the kept one). TrueNorth sends each input to 2 or 4 axons (axon-type
weights per neuron, ``axon_duplication``; each layer's mapping, chosen on validation where
both fit, is in the last column). Each seed's validation part is cut before any training (as
``fit`` does; ``--validation-in-training`` restores the earlier protocol); ``--neuron auto``
trains LIF and IF and deploys, per chip, the better on validation; ``--dataset digits28``
(the digits as 28x28 MNIST IDX files) with ``--hidden mlp=128`` gives the 784-128-10 mlp.
``--anticipate-mapping choose`` (the default, what ``neuroprune fit`` does) also prunes, from
the same dense model, a model whose readout keeps one block of inputs few enough for the chip's
finest mapping (TrueNorth: <= 64 inputs, 4 axons each; ``CapacityModel.finest_mapping_blocks``)
and deploys, per chip and seed, the candidate better on validation (``always``: the block model
alone; ``off``: the shared pruning alone)::

    python benchmarks/quantize.py --models mlp conv --hidden mlp=512,256 --seeds 0 1 2 \\
        --out docs/benchmarks/quantize.md
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import limited, machine, mean_std, publish  # noqa: E402  (benchmarks/common.py)
from packing import write_digits_28  # benchmarks/packing.py: the 28x28 IDX files

from neuroprune.chip.capacity import capacity_model
from neuroprune.chip.profiles import list_profiles, load_profile
from neuroprune.core.errors import UnsupportedError
from neuroprune.data.datasets import load_dataset
from neuroprune.data.split import hold_out
from neuroprune.fit.budget import derive_budget
from neuroprune.models import summarize
from neuroprune.models.registry import AUTO_NEURON, NEURON_MODELS
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import prune_to_budget
from neuroprune.pruning import freeze_mask
from neuroprune.quantize import quantize_model
from neuroprune.train.loop import default_config, evaluate, train

DIGITS_28 = "digits28"
ALWAYS, CHOOSE, OFF = "always", "choose", "off"  # --anticipate-mapping
NEURONS = tuple(NEURON_MODELS)  # --neuron auto tries each, the first (LIF) kept on a tie
AUTO = AUTO_NEURON
DEFAULT_CHIPS = ("all",)
"""``all``: every shipped chip profile."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="digits",
        choices=("digits", "mnist", DIGITS_28),
        help=f"{DIGITS_28}: the digits upsampled to 28x28 and read back as MNIST IDX files "
        "(benchmarks/packing.py's write_digits_28), for a 784-input mlp: --models mlp "
        "--hidden mlp=128",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--validation-in-training",
        action="store_true",
        help="train the dense and pruned models on the whole training split, validation part "
        "included (the protocol before issue 23's TrueNorth work); default: the validation "
        "part is cut first, as fit does, and only the keep/revert decisions read it",
    )
    parser.add_argument("--models", nargs="+", default=["mlp"])
    parser.add_argument(
        "--hidden",
        nargs="*",
        default=["mlp=512,256"],
        help="MODEL=W1,W2 hidden widths per model (default: the demo's mlp 512,256)",
    )
    parser.add_argument("--chips", nargs="+", default=list(DEFAULT_CHIPS))
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--method", default="gmp")
    parser.add_argument(
        "--neuron",
        default=NEURONS[0],
        choices=(*NEURONS, AUTO),
        help=f"{AUTO}: train both per seed and, per chip, deploy the one whose deployed model "
        "is better on validation (a tie keeps LIF, the tool's default)",
    )
    parser.add_argument(
        "--anticipate-mapping",
        choices=(ALWAYS, CHOOSE, OFF),
        default=CHOOSE,
        help="per chip whose finest weight mapping a pruned readout could take (TrueNorth: 4 "
        "axons per input where <= 64 inputs stay used), prune a model of its own from the same "
        "dense model with that readout block (CapacityModel.finest_mapping_blocks); "
        f"{ALWAYS}: deploy that one; {CHOOSE}: quantize both and deploy the one better on "
        "validation (a tie keeps the shared pruning). 'deployed - float' stays against the "
        f"shared pruned model; default {CHOOSE}, what `neuroprune fit` does; {OFF}: the shared "
        f"pruning alone",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dense-epochs", type=int, default=15)
    parser.add_argument("--prune-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--train-limit", type=int, default=None, help="use only N train images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    return parser.parse_args(argv)


def dense_model(args, dataset, model_name: str, seed: int, neuron: str):
    """The trained dense model and its training config."""
    config = default_config(
        model_name, epochs=args.dense_epochs, timesteps=args.timesteps, seed=seed
    )
    hidden = hidden_widths(args.hidden).get(model_name)
    dense = build_model(
        model_name,
        dataset.input_shape,
        dataset.num_classes,
        hidden=hidden,
        neuron=neuron,
        seed=seed,
    )
    train(dense, dataset, config)
    return dense, config


def pruned_model(args, dataset, dense, config, blocks=None):
    """A copy of ``dense`` pruned to the sparsity's exact budget (chip-agnostic; ``blocks``:
    core blocks the projection imposes, layer name -> InputBlocks); returns (model, B)."""
    summary = summarize(dense, dataset.input_shape, args.timesteps)
    budget = derive_budget(None, summary, sparsity=args.sparsity)
    if blocks:
        budget = dataclasses.replace(budget, input_blocks=dict(blocks))
    result = prune_to_budget(
        copy.deepcopy(dense),
        dataset,
        config,
        method=args.method,
        budget=budget,
        epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
    )
    return result.model, budget.synapses


def anticipated_blocks(args, dataset, dense, profile) -> dict:
    """``--anticipate-mapping``: the readout block the chip's finest weight mapping needs
    (``CapacityModel.finest_mapping_blocks``: TrueNorth's 4 axons per input fit a core with
    <= 64 inputs), else ``{}``."""
    if args.anticipate_mapping in (None, OFF):
        return {}
    summary = summarize(dense, dataset.input_shape, args.timesteps)
    return capacity_model(profile).finest_mapping_blocks(summary)


def hidden_widths(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["mlp=512,256"]`` -> ``{"mlp": (512, 256)}``."""
    out = {}
    for item in items:
        name, _, widths = item.partition("=")
        out[name] = tuple(int(w) for w in widths.split(","))
    return out


def chip_ids(chips: list[str]) -> list[str]:
    """The chips to run: ``all`` expands to every shipped profile."""
    if chips == ["all"]:
        return [profile.id for profile in list_profiles()]
    return chips


def float_control(model, dataset, config, epochs: int) -> float:
    """Test accuracy of the pruned float model after ``epochs`` more epochs, mask frozen."""
    control = copy.deepcopy(model)
    if epochs < 1:
        return evaluate(control, dataset.x_test, dataset.y_test, config.timesteps, config.encoding)
    freezer = freeze_mask(control)
    result = train(control, dataset, config.replace(epochs=epochs), callbacks=(freezer,))
    freezer.release()
    return result.test_accuracy


def run_seed(args, dataset, model_name: str, seed: int) -> list[dict]:
    """The seed's rows for ``--neuron``; with ``auto`` both neurons' rows, and per chip the
    one whose deployed model validates better (``neuron`` says which)."""
    if args.neuron != AUTO:
        return run_neuron(args, dataset, model_name, seed, args.neuron)
    tried = [run_neuron(args, dataset, model_name, seed, n) for n in NEURONS]
    return [
        rows[0]
        if "refused" in rows[0]
        else max(rows, key=lambda r: (r["val_deployed"], -NEURONS.index(r["neuron"])))
        for rows in zip(*tried, strict=True)
    ]


def run_neuron(args, dataset, model_name: str, seed: int, neuron: str) -> list[dict]:
    """Cut the seed's validation part (unless ``--validation-in-training``), prune once on the
    rest, then quantize + fine-tune for every chip (decisions read the validation part)."""
    holdout = hold_out(dataset, seed=seed)
    fit_part = dataset if args.validation_in_training else holdout.train
    dense, config = dense_model(args, fit_part, model_name, seed, neuron)
    shared, budget = pruned_model(args, fit_part, dense, config)
    control = float_control(shared, fit_part, config, args.qat_epochs)
    shared_float = evaluate(
        shared, dataset.x_test, dataset.y_test, config.timesteps, config.encoding, seed=seed
    )
    rows, for_blocks = [], {}
    for chip in chip_ids(args.chips):
        profile = load_profile(chip)
        blocks = anticipated_blocks(args, fit_part, dense, profile)
        key = repr(sorted(blocks.items()))
        if blocks and key not in for_blocks:  # pruned once per distinct block structure
            for_blocks[key] = pruned_model(args, fit_part, dense, config, blocks)[0]
        candidates = [("shared", shared, {})]
        if blocks:
            own = ("readout block", for_blocks[key], blocks)
            candidates = [own] if args.anticipate_mapping == ALWAYS else [*candidates, own]
        tried = []
        for pruning, model, used in candidates:
            started = time.perf_counter()
            try:
                result = quantize_model(
                    model,
                    profile,
                    dataset,
                    config,
                    finetune_epochs=args.qat_epochs,
                    holdout=holdout,
                )
            except UnsupportedError as exc:  # e.g. Speck, Xylo: no analog first layer (direct)
                tried.append({"model": model_name, "chip": profile.id, "refused": exc.one_line()})
                print(f"  {model_name} seed={seed} {profile.id}: refused", file=sys.stderr)
                break
            row = result_row(result, model_name, seed, neuron, pruning, used)
            row.update(float=shared_float, budget=budget, control=control)
            row["seconds"] = time.perf_counter() - started
            tried.append(row)
            for note in (n for n in result.notes if "chosen by validation" in n):
                print(f"  {model_name} seed={seed} {profile.id}: {note}", file=sys.stderr)
            print(
                f"  {model_name} {neuron} seed={seed} {profile.id} ({pruning}): "
                f"float={shared_float:.3f} chip_float={result.accuracy_float:.3f} "
                f"ptq={result.accuracy_ptq:.3f} qat={result.accuracy_qat:.3f} "
                f"val_ptq={result.qat.get('val_ptq')} val_qat={result.qat.get('val_qat')} "
                f"qat {result.qat.get('decision')}",
                file=sys.stderr,
            )
        rows.append(tried[0] if "refused" in tried[0] else best_on_validation(tried))
    return rows


def best_on_validation(tried: list[dict]) -> dict:
    """The candidate whose deployed model scores best on validation; a tie keeps the first
    (the shared, unstructured pruning)."""
    return max(enumerate(tried), key=lambda item: (item[1]["val_deployed"], -item[0]))[1]


def result_row(result, model_name: str, seed: int, neuron: str, pruning: str, blocks) -> dict:
    """One table row's figures from a :class:`QuantizeResult` (``float``, ``budget`` and
    ``control`` are the caller's)."""
    kept = result.qat.get("decision") == "kept"
    return {
        "model": model_name,
        "seed": seed,
        "chip": result.chip,
        "format": result.format,
        "chip_float": result.accuracy_float,
        "pruning": pruning,
        "anticipated": [b.describe(name) for name, b in blocks.items()],
        "ptq": result.accuracy_ptq,
        "qat": result.accuracy_qat,
        "kept": kept,
        "deployed": result.accuracy_qat if kept else result.accuracy_ptq,
        "before": sum(r["nonzero_before"] for r in result.layers),
        "after": sum(r["nonzero_after"] for r in result.layers),
        "clipped": max(r["ptq"]["clipped_fraction"] for r in result.layers),
        "mappings": [r.get("mapping") for r in result.layers],
        "neuron": neuron,
        "val_deployed": result.qat["val_qat"] if kept else result.qat["val_ptq"],
    }


def table(rows: list[dict], show_neuron: bool = False) -> str:
    """Markdown: one row per (model, chip), accuracies as mean ± std over seeds."""
    lines = [
        "| model | chip | format | pruned float (%) | float + same epochs (%) | PTQ (%) | "
        "PTQ + fine-tune (%) | QAT kept | deployed (%) | deployed - float (points) | "
        "budget B | kept weights before quantization (min..max) | after quantization "
        "(min..max) | lost (max) | max clipped (PTQ) | mapping per layer, per seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    own = any(r.get("pruning") for r in rows) and any(r.get("anticipated") for r in rows)
    if own:  # --anticipate-mapping: the float model pruned for the chip, after the shared one
        lines = [
            line.replace(" float + same", " pruned for the chip, float (%) | float + same", 1)
            if i == 0
            else line + "---|"
            for i, line in enumerate(lines)
        ]
    keys = list(dict.fromkeys((r["model"], r["chip"]) for r in rows if "refused" not in r))
    for model, chip in keys:
        group = [r for r in rows if (r["model"], r["chip"]) == (model, chip)]
        keys_shown = ("float", "chip_float", "control", "ptq", "qat") if own else None
        cells = [
            mean_std([r[k] for r in group])
            for k in keys_shown or ("float", "control", "ptq", "qat")
        ]
        kept = f"{sum(r['kept'] for r in group)}/{len(group)}"
        drop = mean_std([r["deployed"] - r["float"] for r in group])
        budgets = sorted({r["budget"] for r in group})
        low, high = min(r["after"] for r in group), max(r["after"] for r in group)
        kept_low, kept_high = min(r["before"] for r in group), max(r["before"] for r in group)
        lost = max(r["before"] - r["after"] for r in group)
        clipped = max(r["clipped"] for r in group)
        lines.append(
            f"| {model} | {chip} | {group[0]['format']} | "
            + " | ".join(cells)
            + f" | {kept} | {mean_std([r['deployed'] for r in group])} | {drop} | "
            + f"{'/'.join(map(str, budgets))} | {kept_low}..{kept_high} | {low}..{high} | "
            + f"{lost} | {100 * clipped:.1f} % | {mapping_cell(group, show_neuron)} |"
        )
    return "\n".join(lines)


def mapping_cell(group: list[dict], show_neuron: bool = False) -> str:
    """Each seed's mapping per layer (TrueNorth: ``4x``/``2x`` axons per input; ``-`` where
    the format has one mapping), led by the neuron deployed where ``show_neuron``."""
    seeds = [
        ",".join(m or "-" for m in r["mappings"])
        + (" (readout block)" if r.get("pruning") == "readout block" else "")
        for r in group
    ]
    if show_neuron:
        return " / ".join(f"{r['neuron'].upper()} {x}" for r, x in zip(group, seeds, strict=True))
    return "-" if all(set(x) <= {"-", ","} for x in seeds) else " / ".join(seeds)


def report(args, rows: list[dict], seconds: float) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    return "\n".join(
        [
            "# Quantization to chip formats: pruned float vs quantized accuracy",
            "",
            f"- command: `{command}`",
            f"- machine: {machine()}",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; "
            f"wall time {seconds:.0f} s",
            f"- dataset: {args.dataset}; dense {args.dense_epochs} epochs; {args.method} to sparsity "
            f"{args.sparsity:g} ({args.prune_epochs} + {args.finetune_epochs} epochs); quantization-"
            f"aware fine-tuning {args.qat_epochs} epochs; T = {args.timesteps}"
            + (f"; first {args.train_limit} train images" if args.train_limit else "")
            + (
                "; dense and pruned models trained on the whole training split (validation "
                "part included)"
                if args.validation_in_training
                else "; each seed's validation part (neuroprune.data.split.hold_out) cut before "
                "any training: only the keep/revert and mapping decisions read it"
            ),
            "- accuracies: test accuracy (%) mean ± std over seeds "
            + ", ".join(map(str, args.seeds)),
            "- budget B: synapses the projection kept (conv counted unrolled, one pruned model per "
            "seed, shared by every chip); kept weights: the pruned model's nonzero weights after "
            "BN folding (conv: kernel entries, so fewer than B), before and after quantization; "
            "lost: the most any seed's quantization zeroed. TrueNorth sends each input to 2 or 4 "
            "axons (axon_duplication).",
            f"- neuron: {args.neuron}"
            + (
                " (both LIF and IF trained per seed; per chip the one whose deployed model is "
                "better on validation, LIF on a tie, named in the last column)"
                if args.neuron == AUTO
                else ""
            ),
            "- mapping per layer: the weight mapping each layer deployed, per seed (TrueNorth: "
            "4x or 2x axons per input, chosen on validation where both fit)",
            *(
                [
                    "- pruned for the chip (--anticipate-mapping): where the chip's finest "
                    "weight mapping could take the readout once pruned to few inputs, a model of "
                    "its own is pruned from the same dense model with that readout block "
                    "(CapacityModel.finest_mapping_blocks) and quantized; 'pruned float' and "
                    "'deployed - float' stay the shared model's"
                ]
                if args.anticipate_mapping not in (None, OFF)
                else []
            ),
            "- QAT kept: seeds where the fine-tune beat PTQ on validation and was kept; deployed: "
            "the kept model's test accuracy (PTQ where reverted); deployed - float: points "
            "against the pruned float model.",
            "",
            table(rows, show_neuron=args.neuron == AUTO),
            "",
            *refusals(rows),
        ]
    )


def refusals(rows: list[dict]) -> list[str]:
    """One line per (model, chip) the chip's own rules refused (no row in the table), with the
    reason as neuroprune says it."""
    refused = {(r["model"], r["chip"]): r["refused"] for r in rows if "refused" in r}
    if not refused:
        return []
    lines = ["Refused by the chip's own rules (no row above):", ""]
    lines += [f"- {model} on {chip}: {why}" for (model, chip), why in refused.items()]
    return [*lines, ""]


def load_data(name: str, data_dir: str | None):
    """The dataset; ``digits28`` writes the digits as 28x28 MNIST IDX files (into
    ``data_dir`` when given, else a temporary folder) and reads them with the MNIST reader."""
    if name != DIGITS_28:
        return load_dataset(name, data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_digits_28(Path(data_dir or tmp) / "digits28")
        return load_dataset("mnist", folder)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = limited(load_data(args.dataset, args.data_dir), args.train_limit)
    started = time.perf_counter()
    rows = [
        row
        for model in args.models
        for seed in args.seeds
        for row in run_seed(args, dataset, model, seed)
    ]
    return publish(report(args, rows, time.perf_counter() - started), args.out)


if __name__ == "__main__":
    main()
