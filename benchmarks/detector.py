"""mAP of the spiking detector on spikecam-digits: dense versus channel-pruned to 50 % / 20 %.

For each seed: generate ``spikecam-digits`` (:mod:`neuroprune.data.spikecam`), train the dense
``--model detector`` (:func:`neuroprune.train.detect.train_detector`), then for each fraction
``f`` prune a copy with SCA to ``<= f`` of the dense parameters, ADD-joined channels together
(:func:`neuroprune.pipeline.detect.prune_detector_channels`: SCA epochs then fine-tuning), and
measure mAP@0.5 and mAP@0.5:0.95 on the test scenes with torchmetrics' MeanAveragePrecision.
Writes a Markdown table (mean ± std over seeds), the mAP-per-stage plot and a picture of
predicted boxes on four test scenes (last seed) into ``--plots``, and prints the table.

Example (what docs/benchmarks.md quotes)::

    python benchmarks/detector.py --seeds 0 --train-scenes 512 --test-scenes 128 \\
        --epochs 12 --prune-epochs 3 --finetune-epochs 3 --fractions 0.5 0.2 \\
        --plots docs/img --out docs/benchmarks_detector.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from common import machine, mean_std, publish  # noqa: E402  (benchmarks/common.py)

from neuroprune.data.spikecam import SpikecamOptions, make_spikecam_digits
from neuroprune.models.detector import build_detector
from neuroprune.pipeline.detect import (
    prune_detector_channels,
    prune_detector_sca_stds,
    shared_synapses,
)
from neuroprune.reports.plots import detection_boxes, map_per_stage
from neuroprune.train.detect import (
    DetectTrainConfig,
    mean_average_precision,
    parameter_count,
    predict_boxes,
    train_detector,
)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-scenes", type=int, default=512)
    parser.add_argument("--test-scenes", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.2])
    parser.add_argument(
        "--methods", nargs="+", choices=("sca", "sca+stds"), default=["sca", "sca+stds"]
    )
    parser.add_argument("--json", type=Path, default=None, help="write the per-seed rows here")
    parser.add_argument(
        "--aggregate", type=Path, nargs="+", default=None, help="tables from these --json files"
    )
    parser.add_argument("--neuron", choices=("lif", "if"), default="lif")
    parser.add_argument("--v-threshold", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plots", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def _one_seed(args, seed: int) -> dict[str, dict[str, float]]:
    """Dense and pruned rows of one seed: mAPs, parameters, wall seconds."""
    options = SpikecamOptions(
        train_scenes=args.train_scenes, test_scenes=args.test_scenes, seed=seed
    )
    data = make_spikecam_digits(options)
    config = DetectTrainConfig(epochs=args.epochs, seed=seed)
    started = time.perf_counter()
    dense = build_detector(
        data.input_shape,
        data.num_classes,
        neuron=args.neuron,
        v_threshold=args.v_threshold,
        seed=seed,
    )
    train_detector(dense, data, config)
    rows = {
        "dense": {
            **mean_average_precision(dense, data),
            "params": parameter_count(dense),
            "synapses": shared_synapses(dense, data.input_shape),
            "seconds": time.perf_counter() - started,
        }
    }
    print(seed, "dense", rows["dense"], flush=True)
    models = {"dense": dense}
    prune = {"sca": prune_detector_channels, "sca+stds": prune_detector_sca_stds}
    for method in args.methods:
        for fraction in args.fractions:
            started = time.perf_counter()
            pruned = prune[method](
                copy.deepcopy(dense),
                data,
                config,
                params_fraction=fraction,
                epochs=args.prune_epochs,
                finetune_epochs=args.finetune_epochs,
            )
            name = f"{method} {fraction:g}"
            rows[name] = {
                **mean_average_precision(pruned, data),
                "params": parameter_count(pruned),
                "synapses": shared_synapses(pruned, data.input_shape),
                "seconds": time.perf_counter() - started,
            }
            models[name] = pruned
            print(seed, name, rows[name], flush=True)
    if args.plots is not None:
        _plots(args.plots, data, models, rows, f"detector_{args.neuron}")
    return rows


def _plots(folder: Path, data, models, rows, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    map_per_stage(rows, folder / f"{prefix}_map_per_stage.png")
    scenes = list(range(4))
    for name, model in models.items():
        found = predict_boxes(model, data.x_test[scenes], conf=0.1)
        targets = [data.targets("test", n) for n in scenes]
        slug = name.replace(" ", "_").replace(".", "").replace("+", "_")
        detection_boxes(
            data.x_test[scenes],
            found,
            targets,
            data.class_names,
            folder / f"{prefix}_boxes_{slug}.png",
        )


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    if args.aggregate:
        per_seed = [rows for path in args.aggregate for rows in json.loads(path.read_text())]
    else:
        per_seed = [_one_seed(args, seed) for seed in args.seeds]
    if args.json is not None:
        args.json.write_text(json.dumps(per_seed, indent=1))
    stages = list(per_seed[0])
    lines = [
        "| model | parameters | synapses (shared) | mAP@0.5 (%) | mAP@0.5:0.95 (%) "
        "| wall time per seed (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for stage in stages:
        params = sorted({rows[stage]["params"] for rows in per_seed})
        synapses = sorted({rows[stage]["synapses"] for rows in per_seed})
        lines.append(
            f"| {stage} | {', '.join(str(p) for p in params)} "
            f"| {', '.join(str(p) for p in synapses)} "
            f"| {mean_std([r[stage]['map_50'] for r in per_seed])} "
            f"| {mean_std([r[stage]['map'] for r in per_seed])} "
            f"| {mean_std([r[stage]['seconds'] for r in per_seed], scale=1.0, digits=0)} |"
        )
    command = "python " + shlex.join(["benchmarks/detector.py", *sys.argv[1:]])
    text = "\n".join(
        [
            f"Measured {datetime.date.today().isoformat()} with `{command}`",
            f"on {machine(args.threads)}; {len(per_seed)} seed(s).",
            "",
            *lines,
            "",
        ]
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
