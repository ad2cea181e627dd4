"""Where a pruned model's quantization loss comes from, and which validation statistic should
keep or revert its fine-tune (issue 23, the conv on digits).

Each seed's model is trained and pruned as ``benchmarks/quantize.py`` does (validation part cut
first, same options). Two reports:

``components``: post-training quantization (PTQ) per chip, then the same PTQ model with one
part given back its float value at a time (per layer and for all layers: weights, threshold,
bias, leak tau), with float neurons (``fire`` in float) and with the chip's arithmetic, on the
training part, the validation part and the test split (accuracy % / mean cross-entropy of the
spike counts). Also the share of samples whose two largest output counts tie (the prediction
then takes the lower class index) or differ by one spike: the samples any perturbation flips.

``criteria``: PTQ, then ``--qat-epochs`` of quantization-aware fine-tuning as
:func:`neuroprune.quantize.quantize_model` runs it (learning rate scaled by ``--lr-scale``),
scoring every epoch on validation (accuracy, loss, counts) and on test. The keep/revert rule is
then replayed offline with each statistic (accuracy; accuracy then loss; loss; loss after the
best temperature; Brier score), best epoch and patience 1 as the library does, and the deployed
test accuracy minus the pruned float model's is printed per chip (the test split only reports).

    python benchmarks/quantize_diagnose.py components --seeds 0 1 --chips loihi spinnaker tianjic
    python benchmarks/quantize_diagnose.py criteria --models conv mlp --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import quantize as bench  # benchmarks/quantize.py: the same training and pruning
import torch
from spikingjelly.activation_based.functional.net_config import invalidate_reset_cache

from neuroprune.chip.profiles import load_profile
from neuroprune.data.datasets import load_dataset
from neuroprune.data.split import hold_out
from neuroprune.quantize.api import spike_count_nll
from neuroprune.quantize.chip import use_chip_arithmetic
from neuroprune.quantize.model import ptq_model
from neuroprune.quantize.qat import QuantAwareCallback
from neuroprune.train.loop import predict, train

PARTS = ("train", "val", "test")
PARTS_OF_A_LAYER = ("weights", "threshold", "bias", "tau")
RULES = ("accuracy", "accuracy, then loss", "loss", "loss at best temperature", "Brier")
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 41))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", choices=("components", "criteria"))
    parser.add_argument("--models", nargs="+", default=["conv"])
    parser.add_argument("--hidden", nargs="*", default=["mlp=512,256"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--chips", nargs="+", default=["loihi", "spinnaker", "tianjic"])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--method", default="gmp")
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--dense-epochs", type=int, default=10)
    parser.add_argument("--prune-epochs", type=int, default=6)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--lr-scale", type=float, default=1.0)
    return parser.parse_args(argv)


def counts_of(model, x, config) -> np.ndarray:
    invalidate_reset_cache(model)  # a swapped neuron must be reset too
    _, counts = predict(model, x, config.timesteps, config.encoding, seed=config.seed)
    return counts


def score(model, parts, config) -> str:
    cells = []
    for name in PARTS:
        x, y = parts[name]
        counts = counts_of(model, x, config)
        accuracy = 100 * float(np.mean(np.argmax(counts, 1) == y))
        cells.append(f"{accuracy:.2f} / {spike_count_nll(counts, y):.3f}")
    return " | ".join(cells)


def restore(layer, part: str) -> None:
    """Give ``layer`` back the float value of ``part`` (in the quantized model)."""
    syn, node = layer.block.synapse, layer.block.neuron
    with torch.no_grad():
        if part == "weights":
            syn.weight.copy_(torch.as_tensor(layer.float_weight, dtype=syn.weight.dtype))
        if part == "bias" and syn.bias is not None and layer.float_bias is not None:
            syn.bias.copy_(torch.as_tensor(layer.float_bias, dtype=syn.bias.dtype))
    if part == "threshold":
        node.v_threshold = layer.float_neuron.v_threshold
    if part == "tau" and layer.float_neuron.tau is not None:
        node.tau = layer.float_neuron.tau


def components(args, dataset, model_name, seed) -> None:
    holdout = hold_out(dataset, seed=seed)
    model, config, _ = bench.pruned_model(args, holdout.train, model_name, seed, "lif")
    parts = {
        "train": (holdout.train.x_train, holdout.train.y_train),
        "val": (holdout.x_val, holdout.y_val),
        "test": (dataset.x_test, dataset.y_test),
    }
    print(f"\n### {model_name}, seed {seed}\n")
    for name in ("train", "test"):
        counts = np.sort(counts_of(model, parts[name][0], config), axis=1)
        tie = 100 * np.mean(counts[:, -1] == counts[:, -2])
        close = 100 * np.mean(counts[:, -1] - counts[:, -2] <= 1)
        print(
            f"- float model, {name}: top-2 counts tie {tie:.1f} %, within one spike {close:.1f} %"
        )
    print("\n| chip | model | train % / loss | validation % / loss | test % / loss |")
    print("|---|---|---|---|---|")
    print(f"| - | pruned float | {score(model, parts, config)} |")
    for chip in args.chips:
        profile = load_profile(chip)
        qmodel, layers = ptq_model(model, profile, dataset.input_shape)
        print(f"| {chip} | PTQ, float neurons | {score(qmodel, parts, config)} |")
        chip_model, chip_layers = ptq_model(model, profile, dataset.input_shape)
        _, arithmetic, _ = use_chip_arithmetic(
            chip_model, chip_layers, profile, analog_images=holdout.train.x_train
        )
        if arithmetic:
            print(f"| {chip} | PTQ, {arithmetic} | {score(chip_model, parts, config)} |")
        for part in PARTS_OF_A_LAYER:
            for index in [*range(len(layers)), None]:
                trial, trial_layers = ptq_model(model, profile, dataset.input_shape)
                for i, layer in enumerate(trial_layers):
                    if index is None or i == index:
                        restore(layer, part)
                where = "all layers" if index is None else trial_layers[index].block.name
                print(f"| {chip} | PTQ, {part} float ({where}) | {score(trial, parts, config)} |")


def epoch_scores(args, dataset, model_name, seed) -> list[dict]:
    """Per chip: validation (accuracy, loss, counts) and test accuracy of the float model, PTQ
    and every fine-tuning epoch."""
    holdout = hold_out(dataset, seed=seed)
    model, config, _ = bench.pruned_model(args, holdout.train, model_name, seed, "lif")
    xv, yv, xt, yt = holdout.x_val, holdout.y_val, dataset.x_test, dataset.y_test

    def measure(m):
        counts = counts_of(m, xv, config)
        test = float(np.mean(np.argmax(counts_of(m, xt, config), 1) == yt))
        return {"counts": counts, "test": test}

    rows = []
    for chip in args.chips:
        profile = load_profile(chip)
        qmodel, layers = ptq_model(model, profile, dataset.input_shape)
        layers, _, _ = use_chip_arithmetic(
            qmodel, layers, profile, analog_images=holdout.train.x_train
        )
        row = {"chip": chip, "y": yv, "float": measure(model), "ptq": measure(qmodel)}
        callback, state, epochs = QuantAwareCallback(layers, profile), None, []
        for epoch in range(args.qat_epochs):  # the library's schedule, lr scaled
            lr = args.lr_scale * config.lr * 0.5 * (1 + math.cos(math.pi * epoch / (epoch + 1)))
            step = config.replace(epochs=epoch + 1, lr=lr, lr_schedule="none")
            result = train(
                qmodel,
                holdout.train,
                step,
                callbacks=(callback,),
                start_epoch=epoch,
                optimizer_state=state,
            )
            state = result.optimizer_state
            epochs.append(measure(qmodel))
        rows.append({**row, "epochs": epochs})
    return rows


def statistic(rule: str, counts: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    """Higher is better."""
    accuracy = float(np.mean(np.argmax(counts, 1) == y))
    if rule == "accuracy":
        return (accuracy,)
    if rule == "accuracy, then loss":
        return (accuracy, -spike_count_nll(counts, y))
    if rule == "loss":
        return (-spike_count_nll(counts, y),)
    if rule == "loss at best temperature":
        return (-min(spike_count_nll(counts / t, y) for t in TEMPERATURES),)
    z = counts.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (-float(np.mean(((p - np.eye(z.shape[1])[y]) ** 2).sum(1))),)


def deployed(row: dict, rule: str) -> tuple[float, bool]:
    """Test accuracy of the model the rule deploys (best epoch, patience 1, strict gain)."""
    best, best_epoch = None, 0
    for i, epoch in enumerate(row["epochs"]):
        value = statistic(rule, epoch["counts"], row["y"])
        if best is None or value > best:
            best, best_epoch = value, i
        elif i - best_epoch >= 1:
            break
    keep = best is not None and best > statistic(rule, row["ptq"]["counts"], row["y"])
    return (row["epochs"][best_epoch]["test"] if keep else row["ptq"]["test"]), keep


def criteria(args, dataset) -> None:
    print("\n| model | chip | seeds | " + " | ".join(RULES) + " |")
    print("|---|---|---|" + "---|" * len(RULES))
    for model_name in args.models:
        rows = [
            {**row, "seed": seed}
            for seed in args.seeds
            for row in epoch_scores(args, dataset, model_name, seed)
        ]
        for chip in args.chips:
            group = [r for r in rows if r["chip"] == chip]
            cells = []
            for rule in RULES:
                out = [deployed(r, rule) for r in group]
                drop = [
                    100 * (t - r["float"]["test"]) for (t, _), r in zip(out, group, strict=True)
                ]
                cells.append(f"{np.mean(drop):+.2f} ({sum(k for _, k in out)} kept)")
            seeds = " ".join(map(str, args.seeds))
            print(f"| {model_name} | {chip} | {seeds} | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_dataset("digits", None)
    print("python " + " ".join(sys.argv))
    if args.report == "components":
        for model_name in args.models:
            for seed in args.seeds:
                components(args, dataset, model_name, seed)
    else:
        criteria(args, dataset)


if __name__ == "__main__":
    main()
