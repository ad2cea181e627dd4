"""Issue 25, items 6, 7, 8 and 11, through the command line: plots that name the chip and run,
whole-number core axes and a layer-to-core map, synapses as the chip stores them against the
budget, training curves with stage boundaries and the quantization drop (a reverted fine-tune
drawn as reverted); energy for every profile with a figure, in SI units, the missing figure
named, a derived run's energy its own chip's; report.md and report.json as the deployment
record (command line, every setting resolved, versions and the profile's hash, per-layer stored
synapses, the core map and lower bound, checksums that match the files); progress per batch
with an ETA; a sweep quiet about library warnings unless ``-v``; ``report SWEEP_DIR``.

The PNGs are read back through their text chunks (``Title``; ``Description``: per panel what
matplotlib drew, :func:`neuroprune.reports.plots.figure_description`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from fit_args import tiny_fit_args
from PIL import Image

from neuroprune.cli.app import main

SIM = ["--backend", "reference"]


def invoke(*argv: str):
    return CliRunner().invoke(main, list(argv), env={"COLUMNS": "200"})


def fit(out: Path, name: str, *args: str, **options):
    argv = ["fit", "--out", str(out), "--name", name, *tiny_fit_args(**options), *SIM, *args]
    result = invoke(*argv)
    assert result.exit_code == 0, result.output
    return out / name, result


@pytest.fixture(scope="module")
def truenorth(tmp_path_factory):
    """TrueNorth at 90 % sparsity: pruning binds and ternary rounding loses synapses."""
    return fit(tmp_path_factory.mktemp("runs"), "tn", "--chip", "truenorth", "--sparsity", "0.9")


@pytest.fixture(scope="module")
def tianjic(tmp_path_factory):
    return fit(tmp_path_factory.mktemp("runs"), "tj", "--chip", "tianjic", "--sparsity", "0.9")


@pytest.fixture(scope="module")
def loihi_unbound(tmp_path_factory):
    """Loihi with no allocation, budget or sparsity: nothing to prune."""
    return fit(tmp_path_factory.mktemp("runs"), "lo", "--chip", "loihi")


def report_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def png(path: Path) -> tuple[str, list[dict]]:
    """(title, panels) from a plot's text chunks."""
    text = Image.open(path).text
    return text["Title"], json.loads(text["Description"])


def profile_figure(run_dir: Path, field: str) -> float | None:
    """An energy figure (pJ) as the run's profile.yaml states it, read with yaml alone."""
    energy = yaml.safe_load((run_dir / "profile.yaml").read_text()).get("energy") or {}
    entry = energy.get(field)
    return None if entry is None else float(entry["value"] if isinstance(entry, dict) else entry)


# --------------------------------------------------------------------------------------------
# item 6: plots


@pytest.mark.slow
def test_every_plot_names_the_chip_and_the_run(truenorth):
    run_dir, _ = truenorth
    report = report_of(run_dir)
    assert {"plots/training.png", "plots/layer_synapses.png", "plots/cores.png"} <= set(
        report["plots"]
    )
    for plot in report["plots"]:
        title, _ = png(run_dir / plot)
        assert report["chip_name"] in title and "run tn" in title, (plot, title)


@pytest.mark.slow
def test_core_axes_are_whole_numbers_and_the_map_names_layers_as_everywhere(truenorth):
    run_dir, _ = truenorth
    report, fit_json = report_of(run_dir), json.loads((run_dir / "fit.json").read_text())
    _, panels = png(run_dir / "plots/cores.png")
    for panel in panels:
        cores = [t.split("\n")[0] for t in panel["xticks"] if t]
        assert cores and all(re.fullmatch(r"\d+", c) for c in cores), panel["xticks"]
    [layer_map] = [p for p in panels if p["title"].startswith("Layer-to-core map")]
    names = [row["layer"] for row in report["pruned"]["layers"]]
    assert layer_map["yticks"] == [f"layer {n}" for n in names]
    assert list(fit_json["core_map"]) == names  # fit.json, report.md and the plots: one naming
    assert [row["layer"] for row in report["simulation"]["layers"]] == names
    assert all(row["node"].startswith("l") for row in report["simulation"]["layers"])
    _, rates = png(run_dir / "plots/spike_rates.png")
    assert rates[0]["xticks"] == [f"layer {n}" for n in names]


@pytest.mark.slow
def test_layer_synapses_are_counted_as_stored_against_the_budget(truenorth):
    run_dir, _ = truenorth
    report = report_of(run_dir)
    stored = report["quantized"]["stored_layers"]
    assert sum(r["synapses"] for r in stored) == report["quantized"]["synapses"]
    kept = {r["layer"]: r["synapses"] for r in report["pruned"]["layers"]}
    assert all(r["synapses"] <= kept[r["layer"]] for r in stored)
    assert sum(kept.values()) > report["quantized"]["synapses"]  # ternary rounding lost some
    _, (per_layer, total) = png(run_dir / "plots/layer_synapses.png")
    assert "stored on the chip (after quantization)" in per_layer["legend"]
    assert any(t.startswith(f"budget {report['budget']['synapses']:,}") for t in total["texts"])


@pytest.mark.slow
def test_training_plot_marks_stages_and_the_quantization_drop(truenorth):
    run_dir, _ = truenorth
    quant = report_of(run_dir)["quantized"]
    _, panels = png(run_dir / "plots/training.png")
    texts = panels[0]["texts"]
    drop = 100 * (quant["accuracy_ptq"] - quant["accuracy_float"])
    assert f"quantization\n{drop:+.1f} points" in texts
    skipped = quant["qat"]["decision"] == "skipped"  # PTQ lost nothing on validation
    assert {"dense", "prune", "fine-tune", *([] if skipped else ["QAT"])} <= set(texts)
    if skipped:
        assert any(e.startswith("QAT skipped: PTQ lost nothing") for e in panels[0]["legend"])
    labels = [line["label"] for line in panels[0]["lines"]]
    assert "post-training quantized (PTQ)" in labels
    assert f"deployed: {100 * quant['accuracy']:.1f} %" in labels


@pytest.mark.slow
def test_no_flat_panels_when_nothing_was_pruned(loihi_unbound):
    run_dir, _ = loihi_unbound
    assert report_of(run_dir)["pruned"]["skipped"]
    _, panels = png(run_dir / "plots/training.png")
    assert len(panels) == 1 and panels[0]["ylabel"] == "test accuracy (%)"


def test_a_reverted_fine_tune_is_drawn_reverted(tmp_path):
    from neuroprune.reports.plots import training_curves
    from neuroprune.run.record import QuantizedRecord

    history = {
        "dense": [{"test_accuracy": 0.9}, {"test_accuracy": 0.95}],
        "quantize": [
            {"test_accuracy": 0.97, "val_accuracy": 0.5},
            {"test_accuracy": 0.96, "val_accuracy": 0.6},
        ],
    }
    quantized = QuantizedRecord(
        format="truenorth",
        accuracy=0.8,
        synapses=10,
        neurons=4,
        accuracy_float=0.95,
        accuracy_ptq=0.8,
        qat={"decision": "reverted", "best_epoch": 2},
    )
    training_curves(history, tmp_path / "t.png", title="x", quantized=quantized)
    _, panels = png(tmp_path / "t.png")
    lines = {line["label"]: line["style"] for line in panels[0]["lines"]}
    [fine_tune] = [label for label in lines if "quantization-aware" in label]
    assert "reverted" in fine_tune and lines[fine_tune] == "--"
    assert lines["deployed: PTQ kept"] == "-" and "deployed: 80.0 %" in lines


# --------------------------------------------------------------------------------------------
# item 7: energy


@pytest.mark.slow
def test_truenorth_energy_from_its_figure_in_si_units(truenorth):
    run_dir, result = truenorth
    sim = report_of(run_dir)["simulation"]
    synop = profile_figure(run_dir, "synop_pj")
    assert synop is not None and profile_figure(run_dir, "neuron_update_pj") is None
    assert sim["energy_per_sample_j"] == pytest.approx(synop * 1e-12 * sim["synops_per_sample"])
    assert sim["energy_missing"] == ["energy.neuron_update_pj"]
    markdown = (run_dir / "report.md").read_text()
    line = next(x for x in markdown.splitlines() if "energy estimate" in x)
    assert re.search(r"energy estimate \d[\d.]* (pJ|nJ|µJ|mJ|J) per sample", line)
    assert "e+" not in line and "e-" not in line.split("(")[0]
    assert "no figure in the profile for energy.neuron_update_pj" in line
    assert "energy estimate" in result.stdout


@pytest.mark.slow
def test_a_profile_without_figures_names_them(tianjic):
    run_dir, result = tianjic
    sim = report_of(run_dir)["simulation"]
    assert sim["energy_per_sample_j"] is None
    assert sim["energy_missing"] == ["energy.synop_pj", "energy.neuron_update_pj"]
    said = "no energy estimate: the Tianjic profile has no figure for energy.synop_pj"
    assert said in (run_dir / "report.md").read_text()
    assert said in " ".join(result.stdout.split())


def test_every_shipped_profile_with_a_synaptic_figure_gets_an_estimate():
    from neuroprune.chip.profiles import list_profiles
    from neuroprune.sim.result import energy_estimate

    for profile in list_profiles():
        chip = profile.id
        energy = yaml.safe_load(Path(profile.path).read_text()).get("energy") or {}
        estimate = energy_estimate(profile, synops=1000.0, neurons=10, steps=4)
        if "synop_pj" in energy:
            synop = float(energy["synop_pj"]["value"])
            update = float(energy.get("neuron_update_pj", {}).get("value", 0.0))
            assert estimate.joules == pytest.approx((1000 * synop + 40 * update) * 1e-12), chip
        else:
            assert estimate.joules is None and "energy.synop_pj" in estimate.missing, chip


def test_energy_reads_in_si_prefixes():
    from neuroprune.reports.units import energy_text

    assert energy_text(5e-4) == "500 µJ"
    assert energy_text(1.77e-7) == "177 nJ"
    assert energy_text(2.5e-3) == "2.5 mJ"
    assert energy_text(3.2e-12) == "3.2 pJ"


@pytest.mark.slow
def test_a_derived_quantize_reports_the_new_chips_energy(loihi_unbound):
    run_dir, _ = loihi_unbound
    result = invoke("quantize", str(run_dir), "--chip", "truenorth")
    assert result.exit_code == 0, result.output
    derived = run_dir.parent / f"{run_dir.name}-truenorth"
    sim = report_of(derived)["simulation"]
    synop = profile_figure(derived, "synop_pj")
    assert sim["energy_per_sample_j"] == pytest.approx(synop * 1e-12 * sim["synops_per_sample"])
    loihi = report_of(run_dir)["simulation"]
    assert loihi["energy_missing"] == [] and derived != run_dir
    assert report_of(derived)["deployment"]["command"].startswith("neuroprune quantize ")


# --------------------------------------------------------------------------------------------
# item 8: report.md and report.json as the deployment record


@pytest.mark.slow
def test_report_is_a_deployment_record(truenorth):
    run_dir, _ = truenorth
    report = report_of(run_dir)
    deployment = report["deployment"]
    assert deployment["command"].startswith("neuroprune fit ")
    assert "--chip truenorth" in deployment["command"] and "--sparsity 0.9" in deployment["command"]
    resolved = deployment["resolved"]
    assert None not in resolved.values()
    assert set(resolved) == set(report["config"])
    assert resolved["cores"] == report["budget"]["cores_allocated"]
    assert resolved["budget"] == report["budget"]["synapses"]
    assert "sine" in resolved["scheduler"]  # stds' own scheduler, where --scheduler was not given
    profile_hash = hashlib.sha256((run_dir / "profile.yaml").read_bytes()).hexdigest()
    assert deployment["provenance"]["profile"]["sha256"] == profile_hash
    assert deployment["provenance"]["packages"]["torch"]
    for name, entry in deployment["artifacts"].items():
        data = (run_dir / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, name
    assert {"quantized.pt", "model.nir", "fit.json", "plots/cores.png"} <= set(
        deployment["artifacts"]
    )
    markdown = (run_dir / "report.md").read_text()
    for heading in (
        "## Warnings",
        "## Per layer as the chip stores it",
        "## Cores",
        "## Deployment record",
    ):
        assert heading in markdown
    assert deployment["command"] in markdown and profile_hash in markdown
    assert "Verification: **chip-exact**" in markdown  # TrueNorth's truenorth arithmetic
    fit_json = json.loads((run_dir / "fit.json").read_text())
    assert f"lower bound {fit_json['cores_lower_bound']} core(s)" in markdown
    assert "| null" not in markdown and "| None" not in markdown
    for name, entry in deployment["artifacts"].items():
        assert f"| {name} | {entry['bytes']:,} | `{entry['sha256']}` |" in markdown


@pytest.mark.slow
def test_no_internal_strings_in_report_md(truenorth, tianjic, loihi_unbound):
    for run_dir, _ in (truenorth, tianjic, loihi_unbound):
        markdown = (run_dir / "report.md").read_text()
        assert "dense (no limit)" not in markdown
        assert "measured against: reference" not in markdown
        assert not re.search(r"\((int|loihi|truenorth)\)", markdown)
    markdown = (tianjic[0] / "report.md").read_text()
    assert "## Quantization: Symmetric signed N-bit integers" in markdown


@pytest.mark.slow
def test_simulate_run_joins_the_deployment_record(tianjic):
    run_dir, _ = tianjic
    result = invoke("simulate", str(run_dir), "--backend", "reference", "--samples", "20")
    assert result.exit_code in (0, 1), result.output
    deployment = report_of(run_dir)["deployment"]
    assert deployment["later"][-1].startswith("neuroprune simulate ")
    for name, entry in deployment["artifacts"].items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == entry["sha256"], name


# --------------------------------------------------------------------------------------------
# item 11: progress, sweep


@pytest.mark.slow
def test_training_progress_moves_per_batch_with_an_eta(loihi_unbound):
    run_dir, result = loihi_unbound
    report = report_of(run_dir)
    batch = report["config"]["batch_size"]
    steps = math.ceil(report["validation"]["train_samples"] / batch)
    epochs = report["config"]["epochs"]
    line = next(x for x in result.stdout.splitlines() if x.startswith("dense "))
    assert f"{epochs * steps}/{epochs * steps} batches" in line
    assert line.rstrip().endswith("done")


@pytest.mark.slow
def test_simulation_shows_a_bar_of_test_samples(loihi_unbound):
    """The simulate stage draws its own bar, in samples, ending done (the reference backend
    fills it at its end; Lava moves it chunk by chunk: the next test)."""
    run_dir, result = loihi_unbound
    samples = report_of(run_dir)["simulation"]["samples"]
    line = next(x for x in result.stdout.splitlines() if x.startswith("simulate "))
    assert f"{samples}/{samples} samples" in line
    assert line.rstrip().endswith("done")


def test_the_simulation_bar_follows_the_lava_workers_chunks():
    """Lava's worker reports ``chunk_done`` with the samples finished so far (from its child
    process); the bar advances by the difference and ends with the backend's ``done``."""
    from neuroprune.core.progress import emit
    from neuroprune.pipeline.context import _simulation_progress

    seen: list[dict] = []
    run = SimpleNamespace(progress=lambda event: seen.append(dict(event)))
    forward = _simulation_progress(run)
    emit(forward, stage="simulate", event="start", samples=100, backend="lava")
    for finished in (40, 80, 100):
        emit(forward, stage="simulate", event="chunk_done", chunk=1, chunks=3, samples=finished)
    emit(forward, stage="simulate", event="done", backend="lava")
    assert seen[0] == {"stage": "simulate", "total": 100, "unit": "samples"}
    assert [e["advance"] for e in seen[1:4]] == [40, 40, 20]
    assert seen[-1] == {"stage": "simulate", "done": True}


WARNING_MODEL = """
import logging
import warnings

from neuroprune.models.zoo import build_model


def make(input_shape, num_classes):
    warnings.warn("np-test library warning", UserWarning)
    logging.getLogger("np_test_lib").warning("np-test library log line")
    return build_model("mlp", input_shape, num_classes, hidden=(16,))
"""


def neuroprune(*argv: str) -> subprocess.CompletedProcess:
    """The command in its own process, as a user runs it (pytest captures warnings and log
    records in its own process, so stderr is only seen whole from outside)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "neuroprune", *argv], capture_output=True, text=True, env=env
    )


@pytest.mark.slow
def test_sweep_is_quiet_about_library_warnings_unless_verbose_and_report_prints_it(tmp_path):
    model = tmp_path / "warn_model.py"
    model.write_text(WARNING_MODEL)
    args = ["sweep", "--chips", "loihi", "--methods", "gmp", "--sparsities", "0.8"]
    args += ["--model", f"{model}:make", "--out", str(tmp_path / "sw"), "--name", "s"]
    args += tiny_fit_args(hidden=None) + ["--backend", "none"]
    quiet = neuroprune(*args)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "np-test library" not in quiet.stderr and "Traceback" not in quiet.stderr
    loud = neuroprune("-v", *args, "--resume")  # the trial is reused; the driver builds it again
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert "np-test library warning" in loud.stderr and "np-test library log line" in loud.stderr
    shown = invoke("report", str(tmp_path / "sw" / "s"))
    assert shown.exit_code == 0, shown.output
    assert "loihi-gmp-s0.8" in shown.stdout and "Sweep" in shown.stdout
    assert "1 trial(s)" in shown.stdout
