"""The seed papers' headline claims as benchmarks (docs/claims.md), one command per claim.

Every claim runs on networks large enough that the sparsities tested leave a real network: the
demo's mlp 64-512-256-10 (166,400 synapses: 1 % is 1,664) and a wider conv net (16, 32
channels). Data: the bundled digits; the validation part is cut from the training split before
any training (:func:`neuroprune.data.split.hold_out`, seeded) and the networks train on the
rest. No run takes a decision (fixed epochs, budgets from counts): the test split is only
reported. Each row carries

* ``accuracy``: test accuracy (0..1) of the pruned float model;
* ``chip_accuracy``: the same network quantized to Loihi's formats (post-training quantization,
  chip arithmetic; :func:`neuroprune.quantize.quantize_model` with 0 fine-tuning epochs),
  exported to NIR and simulated bit-exact by the reference backend (``loihi_fixed_pt``) on the
  whole test split: the figure no paper reports;
* ``frontier``: rows of method ``frontier``: a dense narrow network (mlp 64-h-10, or the conv
  with narrower channels) with at most the pruned network's synapse count, trained from scratch
  for as many epochs as the pruned network got in all (dense + prune + fine-tune): the capacity
  frontier that pruning must beat.

Claims (``run CLAIM``):

* ``threshold``: STDS (sine) with a fixed final threshold ``D`` and no controller; final sparsity
  of ``w = S_d(theta)`` against ``D`` (is it monotonic?);
* ``schedulers``: STDS sine against linear at 90/95/98/99 % (exact budgets);
* ``collapse``: STDS, LATS and GMP at 93 % under a cosine learning rate, accuracy and sparsity
  after every epoch (STDS here follows the cosine rate, as the claim states; neuroprune's own
  STDS prunes at a constant rate for this reason);
* ``gradr``: Grad R at 99 % and 99.5 %;
* ``sca``: SCA on the conv net at 75 % synapse sparsity: regrowth q = 0 against 0.1 and 0.3, and
  importance by spiking activity (SCA) against BN gamma and filter L1;
* ``channels``: SCA channel pruning to half the synapses (50 %) on the conv net.

Results go to ``--results/CLAIM.json`` after every run (a list of rows); a rerun skips the rows
it has, so an interrupted claim resumes. ``report`` draws one figure per claim into
``--figures`` and prints the tables (mean ± std over seeds) that docs/claims.md quotes.

    python benchmarks/claims.py run schedulers --seeds 0 1 2
    python benchmarks/claims.py report
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine  # noqa: E402  (benchmarks/common.py)

from neuroprune.chip.profiles import load_profile
from neuroprune.core.atomic import write_text
from neuroprune.data.datasets import load_dataset
from neuroprune.data.split import hold_out
from neuroprune.export import export_nir
from neuroprune.fit.budget import derive_budget
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline import structured
from neuroprune.pipeline.prune_loop import layer_report, lr_schedule, prune_config, prune_to_budget
from neuroprune.pruning.masking import GMP
from neuroprune.pruning.sca import SCA
from neuroprune.pruning.soft_threshold import LATS, STDS
from neuroprune.quantize import quantize_model
from neuroprune.sim import simulate
from neuroprune.train.loop import default_config, evaluate, train

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ("threshold", "schedulers", "collapse", "gradr", "sca", "channels")
NETS = {"mlp": (512, 256), "conv": (16, 32)}
CLAIM_NET = {
    "threshold": "mlp",
    "schedulers": "mlp",
    "collapse": "mlp",
    "gradr": "mlp",
    "sca": "conv",
    "channels": "conv",
}
THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # D, weight units (dense |w| ~ 0.01-0.1)


# ------------------------------------------------------------------------------------------
# Shared pieces


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one claim (resumes from its JSON)")
    run.add_argument("claim", choices=CLAIMS)
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--dense-epochs", type=int, default=6)
    run.add_argument("--prune-epochs", type=int, default=4)
    run.add_argument("--finetune-epochs", type=int, default=1)
    run.add_argument("--collapse-epochs", type=int, default=8, help="prune epochs, collapse")
    run.add_argument("--timesteps", type=int, default=4)
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--prune-lr", type=float, default=None, help="pruning lr (default: model's)")
    run.add_argument("--variant", default="", help="suffix of the results file (CLAIM-VARIANT)")
    run.add_argument("--chip", default="loihi")
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--results", default=str(ROOT / "docs" / "claims" / "results"))
    run.add_argument("--cache", default=str(Path.home() / ".cache" / "neuroprune-claims"))
    report = sub.add_parser("report", help="figures and tables from the results")
    report.add_argument("--results", default=str(ROOT / "docs" / "claims" / "results"))
    report.add_argument("--figures", default=str(ROOT / "docs" / "claims"))
    return parser.parse_args(argv)


class Bench:
    """One claim's run: data split, dense models (cached), result file, chip column."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.net = CLAIM_NET[args.claim]
        self.dataset = load_dataset("digits")
        self.profile = load_profile(args.chip)
        self.stem = f"{args.claim}-{args.variant}" if args.variant else args.claim
        self.path = Path(args.results) / f"{self.stem}.json"
        self.rows: list[dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.exists() else []
        )

    # results -------------------------------------------------------------------------------
    def done(self, key: dict[str, Any]) -> bool:
        return any(all(r.get(k) == v for k, v in key.items()) for r in self.rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps(self.rows, indent=1, default=float) + "\n")
        shown = {k: v for k, v in row.items() if k not in ("history", "machine")}
        print(json.dumps(shown, default=float), file=sys.stderr, flush=True)

    # data and models -----------------------------------------------------------------------
    def split(self, seed: int):
        """The training split without its validation part (held out, unused), test intact."""
        return hold_out(self.dataset, seed=seed)

    def config(self, seed: int, epochs: int):
        return default_config(
            self.net,
            epochs=epochs,
            batch_size=self.args.batch_size,
            timesteps=self.args.timesteps,
            seed=seed,
        )

    def prune_config(self, seed: int):
        """The training config the pruning runs start from (``--prune-lr`` when given)."""
        config = self.config(seed, self.args.dense_epochs)
        return config.replace(lr=self.args.prune_lr) if self.args.prune_lr else config

    def build(self, seed: int, hidden=None) -> torch.nn.Module:
        hidden = NETS[self.net] if hidden is None else hidden
        return build_model(
            self.net, self.dataset.input_shape, self.dataset.num_classes, hidden=hidden, seed=seed
        )

    def dense(self, seed: int) -> tuple[torch.nn.Module, float]:
        """The dense network of ``seed``, trained ``--dense-epochs`` (cached on disk)."""
        a = self.args
        name = f"{self.net}-{'x'.join(map(str, NETS[self.net]))}-T{a.timesteps}-b{a.batch_size}"
        file = Path(a.cache) / f"{name}-e{a.dense_epochs}-s{seed}.pt"
        model = self.build(seed)
        data = self.split(seed).train
        config = self.config(seed, a.dense_epochs)
        if file.exists():
            model.load_state_dict(torch.load(file, weights_only=True))
        else:
            train(model, data, config)
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), file)
        accuracy = evaluate(
            model, data.x_test, data.y_test, config.timesteps, config.encoding, seed=seed
        )
        return model, float(accuracy)

    def synapses(self, model: torch.nn.Module) -> tuple[int, int]:
        """(kept synapses, dense positions), conv unrolled (neuroprune's convention)."""
        rows = layer_report(model, tuple(self.dataset.input_shape), self.args.timesteps)
        return sum(r["synapses"] for r in rows), sum(r["dense"] for r in rows)

    def chip(self, model: torch.nn.Module, seed: int) -> dict[str, Any]:
        """Loihi PTQ + bit-exact reference simulation of the whole test split."""
        holdout = self.split(seed)
        config = self.config(seed, 1)
        q = quantize_model(model, self.profile, holdout.train, config, finetune_epochs=0,
                           holdout=holdout)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="np-claims-") as tmp:
            path = export_nir(
                q.model,
                Path(tmp) / "m.nir",
                timesteps=config.timesteps,
                encoding=config.encoding,
                input_shape=tuple(self.dataset.input_shape),
                chip=self.profile.id,
            )
            sim = simulate(
                path,
                x=self.dataset.x_test,
                y=self.dataset.y_test,
                profile=self.profile,
                backend="reference",
                fixed_point=True,
                reference_model=q.model,
            )
        data = sim.as_dict()
        return {
            "chip_accuracy": data.get("accuracy"),
            "chip_ptq_model_accuracy": q.accuracy_ptq,
            "chip_spike_agreement": data.get("spike_agreement"),
            "chip_synapses": self.synapses(q.model)[0],
        }

    def frontier(self, seed: int, synapses: int, epochs: int) -> None:
        """The dense narrow network with at most ``synapses`` synapses, ``epochs`` epochs."""
        key = {"method": "frontier", "seed": seed, "target_synapses": int(synapses)}
        if self.done(key):
            return
        hidden = self.narrow(synapses)
        model = build_model(
            self.net,
            self.dataset.input_shape,
            self.dataset.num_classes,
            hidden=hidden,
            seed=seed,
        )
        result = train(model, self.split(seed).train, self.config(seed, epochs))
        kept, _ = self.synapses(model)
        self.add(
            {
                **key,
                "hidden": list(hidden),
                "synapses": kept,
                "epochs": epochs,
                "accuracy": result.test_accuracy,
                **self.chip(model, seed),
            }
        )

    def narrow(self, synapses: int) -> tuple[int, ...]:
        """Widths of the narrow net: mlp 64-h-10, or conv (c, 2c), with the most synapses
        ``<= synapses`` (at least width 1)."""
        inputs = int(np.prod(self.dataset.input_shape))
        classes = self.dataset.num_classes
        if self.net == "mlp":
            return (max(1, synapses // (inputs + classes)),)
        best = (1, 2)
        for c in range(1, NETS["conv"][0] + 1):
            probe = self.build(0, hidden=(c, 2 * c))
            if self.synapses(probe)[0] <= synapses:
                best = (c, 2 * c)
        return best

    def total_epochs(self) -> int:
        a = self.args
        return a.dense_epochs + a.prune_epochs + a.finetune_epochs

    def pruned_row(self, key, seed, dense_acc, model, accuracy, seconds, history=()) -> dict:
        kept, dense = self.synapses(model)
        return {
            **key,
            "seed": seed,
            "dense_accuracy": dense_acc,
            "accuracy": accuracy,
            "synapses": kept,
            "dense_synapses": dense,
            "sparsity": 1 - kept / dense,
            "seconds": seconds,
            "history": list(history),
            **self.chip(model, seed),
        }


# ------------------------------------------------------------------------------------------
# Claims


class FixedThresholdSTDS(STDS):
    """STDS with the final threshold ``D`` fixed by hand: no calibration, no controller."""

    fixed_d = 0.0

    def begin(self) -> None:
        self.knob = self.fixed_d
        self._set_threshold(0.0)

    def _track(self) -> None:  # no controller
        return


class CosineSTDS(STDS):
    """STDS following the configured (cosine) learning rate, as the STDS paper's claim on
    ImageNet does; neuroprune's STDS replaces it with a constant rate of the same total."""

    constant_lr = False


def prune_with(cls, model, data, config, budget, epochs, finetune_epochs, **options):
    """``prune_to_budget``'s recipe for a method class (attach, train, project, fine-tune,
    finalize); the test accuracy after every epoch is only recorded (history)."""
    prune_cfg = prune_config(config, epochs, constant=cls.constant_lr)
    pruner = cls(
        budget,
        input_shape=tuple(data.input_shape),
        lr_schedule=lr_schedule(prune_cfg, len(data.y_train)),
        **options,
    )
    pruner.attach(model)
    history = [
        {"stage": "prune", **r} for r in train(model, data, prune_cfg, callbacks=[pruner]).history
    ]
    pruner.project()
    ft_cfg = config.replace(epochs=finetune_epochs, lr=config.lr * 0.5)
    history += [
        {"stage": "finetune", **r} for r in train(model, data, ft_cfg, callbacks=[pruner]).history
    ]
    pruner.finalize(model)
    return model, history


def claim_threshold(bench: Bench) -> None:
    a = bench.args
    for seed in a.seeds:
        dense, dense_acc = bench.dense(seed)
        data = bench.split(seed).train
        total = bench.synapses(dense)[1]
        for d in THRESHOLDS:
            key = {"method": "stds-sine fixed D", "D": d, "seed": seed}
            if bench.done(key):
                continue
            started = time.perf_counter()
            model = copy.deepcopy(dense)
            cls = type("Fixed", (FixedThresholdSTDS,), {"fixed_d": d})
            budget = derive_budget(
                None, summarize(model, data.input_shape, a.timesteps), sparsity=0.5
            )  # fmt: skip  (unused: nothing projects)
            config = bench.prune_config(seed)
            prune_cfg = prune_config(config, a.prune_epochs, constant=True)
            pruner = cls(budget, input_shape=tuple(data.input_shape), scheduler="sine",
                         lr_schedule=lr_schedule(prune_cfg, len(data.y_train)))  # fmt: skip
            pruner.attach(model)
            history = train(model, data, prune_cfg, callbacks=[pruner]).history
            values = [pruner._weight(t) for t in pruner.targets]
            for target, value in zip(pruner.targets, values, strict=True):
                pruner._remove_parametrization(target)
                with torch.no_grad():
                    target.module.weight.copy_(value)
            accuracy = evaluate(model, data.x_test, data.y_test, a.timesteps, "direct", seed=seed)
            row = bench.pruned_row(key, seed, dense_acc, model, float(accuracy),
                                   time.perf_counter() - started, history)  # fmt: skip
            row["dense_synapses"] = total
            bench.add(row)
            bench.frontier(seed, max(row["synapses"], 1), bench.total_epochs() - a.finetune_epochs)


def claim_budgeted(bench: Bench, methods: list[str], sparsities: list[float]) -> None:
    a = bench.args
    for seed in a.seeds:
        dense, dense_acc = bench.dense(seed)
        data = bench.split(seed).train
        summary = summarize(dense, data.input_shape, a.timesteps)
        for sparsity in sparsities:
            budget = derive_budget(None, summary, sparsity=sparsity)
            for spec in methods:
                key = {"method": spec, "target_sparsity": sparsity, "seed": seed}
                if bench.done(key):
                    continue
                name, _, scheduler = spec.partition("-")
                started = time.perf_counter()
                result = prune_to_budget(
                    copy.deepcopy(dense),
                    data,
                    bench.prune_config(seed),
                    method=name,
                    budget=budget,
                    scheduler=scheduler or None,
                    epochs=a.prune_epochs,
                    finetune_epochs=a.finetune_epochs,
                )
                bench.add(
                    bench.pruned_row(
                        {**key, "budget": budget.synapses},
                        seed,
                        dense_acc,
                        result.model,
                        result.accuracy,
                        time.perf_counter() - started,
                        result.history,
                    )
                )
            bench.frontier(seed, budget.synapses, bench.total_epochs())


def claim_collapse(bench: Bench, sparsity: float = 0.93) -> None:
    a = bench.args
    classes = {"stds-sine (cosine lr)": CosineSTDS, "lats": LATS, "gmp": GMP}
    for seed in a.seeds:
        dense, dense_acc = bench.dense(seed)
        data = bench.split(seed).train
        budget = derive_budget(None, summarize(dense, data.input_shape, a.timesteps),
                               sparsity=sparsity)  # fmt: skip
        for name, cls in classes.items():
            key = {"method": name, "target_sparsity": sparsity, "seed": seed}
            if bench.done(key):
                continue
            started = time.perf_counter()
            options = {"scheduler": "sine"} if cls is CosineSTDS else {}
            model, history = prune_with(
                cls,
                copy.deepcopy(dense),
                data,
                bench.prune_config(seed),
                budget,
                a.collapse_epochs,
                a.finetune_epochs,
                **options,
            )
            accuracy = evaluate(model, data.x_test, data.y_test, a.timesteps, "direct", seed=seed)
            bench.add(
                bench.pruned_row(
                    {**key, "budget": budget.synapses},
                    seed,
                    dense_acc,
                    model,
                    float(accuracy),
                    time.perf_counter() - started,
                    history,
                )
            )
        bench.frontier(
            seed, budget.synapses, a.dense_epochs + a.collapse_epochs + a.finetune_epochs
        )


def importance_class(kind: str) -> type[SCA]:
    """SCA with its channel importance replaced: ``activity`` (SCA's own), ``gamma`` (|BN
    gamma| of the producers' BatchNorm, mean over producers) or ``l1`` (mean |W| of each
    filter). Regrowth (by BN-gamma gradient) is unchanged."""
    if kind == "activity":
        return SCA

    class Importance(SCA):
        def _importance(self):
            if kind == "l1":
                return self._filter_magnitudes()
            out = {}
            for space in self.graph.spaces:
                per = []
                for wired in self.graph.producers(space):
                    modules = dict(self.model.named_children())
                    names = list(modules)
                    bn = modules[names[names.index(wired.name) + 1]]
                    per.append(bn.weight.detach().abs().double().cpu().numpy())
                out[space] = np.mean(per, axis=0)
            return out

    return Importance


def claim_structured(bench: Bench, configs: dict[str, tuple[float, str]], sparsity: float):
    a = bench.args
    for seed in a.seeds:
        dense, dense_acc = bench.dense(seed)
        data = bench.split(seed).train
        budget = derive_budget(None, summarize(dense, data.input_shape, a.timesteps),
                               sparsity=sparsity)  # fmt: skip
        for name, (q, importance) in configs.items():
            key = {"method": name, "target_sparsity": sparsity, "seed": seed}
            if bench.done(key):
                continue
            started = time.perf_counter()
            original = structured.SCA
            structured.SCA = importance_class(importance)
            try:
                result = structured.prune_structured(
                    copy.deepcopy(dense),
                    data,
                    bench.prune_config(seed),
                    budget=budget,
                    epochs=a.prune_epochs,
                    finetune_epochs=a.finetune_epochs,
                    p=0.0,
                    q=q,
                )
            finally:
                structured.SCA = original
            row = bench.pruned_row(
                {**key, "budget": budget.synapses, "q": q, "importance": importance},
                seed,
                dense_acc,
                result.model,
                result.accuracy,
                time.perf_counter() - started,
            )
            row["dense_synapses"] = bench.synapses(dense)[1]
            row["sparsity"] = 1 - row["synapses"] / row["dense_synapses"]
            row["neurons"], row["neurons_before"] = result.neurons, result.neurons_before
            row["parameters"] = sum(p.numel() for p in result.model.parameters())
            row["parameters_before"] = sum(p.numel() for p in dense.parameters())
            row["widths"] = result.widths
            bench.add(row)
        bench.frontier(seed, budget.synapses, bench.total_epochs())


def run_claim(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    started = time.perf_counter()
    if args.claim == "threshold":
        claim_threshold(bench)
    elif args.claim == "schedulers":
        claim_budgeted(bench, ["stds-sine", "stds-linear"], [0.9, 0.95, 0.98, 0.99])
    elif args.claim == "gradr":
        claim_budgeted(bench, ["gradr"], [0.99, 0.995])
    elif args.claim == "collapse":
        claim_collapse(bench)
    elif args.claim == "sca":
        configs = {
            "sca q=0 (activity)": (0.0, "activity"),
            "sca q=0.1 (activity)": (0.1, "activity"),
            "sca q=0.3 (activity)": (0.3, "activity"),
            "sca q=0.1 (BN gamma)": (0.1, "gamma"),
            "sca q=0.1 (filter L1)": (0.1, "l1"),
        }
        claim_structured(bench, configs, 0.75)
    elif args.claim == "channels":
        claim_structured(bench, {"sca q=0.1 (activity)": (0.1, "activity")}, 0.5)
    meta = Path(args.results) / f"{bench.stem}.meta.json"
    write_text(
        meta,
        json.dumps(
            {
                "command": "python benchmarks/claims.py " + " ".join(sys.argv[1:]),
                "machine": machine(args.threads),
                "seconds_last_call": time.perf_counter() - started,
                "settings": {k: v for k, v in vars(args).items() if k not in ("cache", "results")},
            },
            indent=1,
        )
        + "\n",
    )


# ------------------------------------------------------------------------------------------
# Report


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "run":
        run_claim(args)
        return 0
    from claims_report import report  # noqa: E402  (benchmarks/claims_report.py)

    print(report(Path(args.results), Path(args.figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
