"""Run directories users can trust: safe loading (crafted pickles never run), the lock and a
concurrent writer, resume that verifies its inputs, stale files, `quantize RUN` reading the
run's own settings, and file-system faults."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fit_args import tiny_fit_args

from neuroprune.cli.app import main
from neuroprune.core.errors import EXIT_BAD_INPUT, EXIT_IO_ERROR
from neuroprune.run.rundir import RunDir, RunLockedError

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_fit_args(seed=0)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


def fit(out, *args, name="run"):
    return cli("fit", "--chip", "loihi", "--out", out, "--name", name, *TINY, *args)


def fit_process_argv(out, *args, name="run") -> list[str]:
    """``fit`` with the tiny settings, as a command line for a separate Python process."""
    head = [sys.executable, "-m", "neuroprune", "fit", "--chip", "loihi", "--out", str(out)]
    return [*head, "--name", name, *TINY, *args]


def one_line(result, code):
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One small run with a reference simulation (floating point): every artifact present."""
    out = tmp_path_factory.mktemp("runs")
    result = fit(out, "--sparsity", "0.8", "--backend", "reference", "--floating-point")
    assert result.exit_code == 0, result.stderr
    return out / "run"


# --------------------------------------------------------------------------------------------
# Safe loading


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if code ever ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["quantized.pt", "pruned.pt", "dense.pt"])
def test_crafted_pickle_never_runs(tiny_run, tmp_path, victim):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    marker = tmp_path / "PWNED"
    # Later stages' files are removed so that export/simulate read the victim as the final model.
    order = ["dense.pt", "pruned.pt", "quantized.pt"]
    for later in order[order.index(victim) + 1 :]:
        (run_dir / later).unlink()
    torch.save(
        {
            "format": "neuroprune-model",
            "version": 2,
            "model": _Payload(marker),
            "architecture": _Payload(marker),
            "state": {},
            "meta": "{}",
        },
        run_dir / victim,
    )
    before = snapshot(run_dir)
    commands = [
        ["export", run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx"],
        ["simulate", run_dir, "--backend", "reference", "--floating-point"],
        ["quantize", run_dir],
        [
            "fit",
            "--chip",
            "loihi",
            "--out",
            tmp_path,
            "--name",
            "run",
            *TINY,
            "--sparsity",
            "0.8",
            "--backend",
            "none",
            "--resume",
        ],
    ]
    for argv in commands:
        if victim != "pruned.pt" and argv[0] == "quantize":
            continue  # quantize reads pruned.pt only
        result = cli(*argv)
        line = one_line(result, EXIT_BAD_INPUT)
        assert victim in line and "not executed" in line, line
        assert not marker.exists(), f"payload ran under {argv[0]}"
    after = snapshot(run_dir)
    for name in ("config.yaml", "log.txt"):  # fit --resume starts a run: these are its own
        before.pop(name), after.pop(name)
    assert after == before


def test_models_round_trip_through_the_description(tmp_path):
    from spikingjelly.activation_based import functional

    from neuroprune.models.zoo import build_model
    from neuroprune.run.artifacts import describe_model, load_model, save_model

    for spec in ("mlp", "conv", "sew"):
        model = build_model(spec, (1, 8, 8), 10, hidden=(12, 8) if spec != "conv" else None)
        json.dumps(describe_model(model))  # declarative: JSON-able
        save_model(tmp_path / "m.pt", model.eval(), {"k": [1]})
        loaded, meta = load_model(tmp_path / "m.pt")
        x = torch.rand(3, 2, 1, 8, 8)
        functional.reset_net(model)
        assert torch.equal(model(x), loaded(x)) and meta == {"k": [1]}


# --------------------------------------------------------------------------------------------
# Lock and concurrent writers


HOLD = """
import sys, time
from neuroprune.run.rundir import RunDir
rd = RunDir(sys.argv[1]); rd.acquire(); print("locked", flush=True); time.sleep(60)
"""


def test_second_writer_names_the_holder_and_touches_nothing(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "report.json").write_text("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run_dir)
        result = fit(tmp_path, "--backend", "none")
        line = one_line(result, EXIT_BAD_INPUT)
        assert f"pid={holder.pid}" in line, line
        assert snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is taken over.
    lock = tmp_path / ".run.lock"  # beside the run, so that it outlives a swap of the folder
    assert RunDir(run_dir).lock_path == lock
    assert lock.read_text().strip() == str(holder.pid)
    rd = RunDir(run_dir)
    with rd.lock():
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(RunLockedError):
            RunDir(run_dir).acquire()
    assert not lock.exists()


@pytest.mark.slow
def test_concurrent_fits_one_wins_and_the_directory_is_one_run(tmp_path):
    argv = fit_process_argv(tmp_path, "--backend", "none")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [*argv, "--seed", str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, EXIT_BAD_INPUT], outs
    loser = next(err for code, _, err in outs if code == EXIT_BAD_INPUT)
    assert "another neuroprune process" in loser and "pid=" in loser
    winner = procs[[code for code, _, _ in outs].index(0)]
    seed = 1 if winner is procs[0] else 2
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["config"]["seed"] == seed
    for stage in ("dense", "pruned", "quantized"):
        _, meta = RunDir(tmp_path / "run").load_model(stage)
        assert meta["inputs"]["seed"] == seed


# --------------------------------------------------------------------------------------------
# Resume that verifies, stale files


@pytest.mark.slow
def test_resume_reruns_stages_whose_inputs_changed(tmp_path):
    wide = [a if a != "32" else "128" for a in TINY]
    first = cli(
        "fit",
        "--chip",
        "loihi",
        "--out",
        tmp_path,
        "--name",
        "run",
        *wide,
        "--sparsity",
        "0.9",
        "--backend",
        "reference",
        "--floating-point",
    )
    assert first.exit_code == 0, first.stderr
    run_dir = tmp_path / "run"
    assert (run_dir / "simulation.json").is_file()
    narrow = fit(tmp_path, "--sparsity", "0.9", "--backend", "none", "--resume", "--json")
    assert narrow.exit_code == 0, narrow.stderr
    log = (run_dir / "log.txt").read_text()
    assert "hidden ([128] -> [32])" in log, log
    report = json.loads(narrow.stdout)
    assert report["dense"]["neurons"] == 32 + 10
    assert report["pruned"]["synapses"] <= report["budget"]["synapses"]
    assert report["quantized"]["synapses"] <= report["budget"]["synapses"]
    # --backend none this time: the earlier simulation's files are gone
    assert report["simulation"] is None
    assert not (run_dir / "simulation.json").exists()
    assert not (run_dir / "plots" / "spike_rates.png").exists()

    other_chip = cli(
        "fit",
        "--chip",
        "truenorth",
        "--out",
        tmp_path,
        "--name",
        "run",
        *TINY,
        "--sparsity",
        "0.9",
        "--backend",
        "none",
        "--resume",
        "--json",
    )
    assert other_chip.exit_code in (0, 1), other_chip.stderr
    log = (run_dir / "log.txt").read_text()
    assert "reused dense.pt" in log
    assert "chip ('loihi' -> 'truenorth')" in log, log
    report = json.loads(other_chip.stdout)
    assert report["chip"] == "truenorth" and report["quantized"]["format"] != "loihi"
    _, meta = RunDir(run_dir).load_model("quantized")
    assert meta["inputs"]["chip"] == "truenorth"


# --------------------------------------------------------------------------------------------
# quantize RUN uses the run's own dataset and T


def write_mnist(folder: Path, n_train=40, n_test=12, size=6, seed=0) -> None:
    """Synthetic MNIST in IDX format (magic 0x0803 images / 0x0801 labels, big-endian sizes)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        header = bytes([0, 0, 0x08, array.ndim])
        header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (folder / name).write_bytes(header + array.tobytes())


@pytest.mark.slow
def test_quantize_run_uses_the_runs_dataset_and_timesteps(tmp_path, monkeypatch):
    data = tmp_path / "mnist"
    write_mnist(data)
    made = cli(
        "fit",
        "--chip",
        "loihi",
        "--dataset",
        "mnist",
        "--data-dir",
        data,
        "--out",
        tmp_path,
        "--name",
        "run",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--prune-epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--quant-epochs",
        "0",
        "--timesteps",
        "3",
        "--sparsity",
        "0.5",
        "--backend",
        "none",
    )
    assert made.exit_code == 0, made.stderr
    import neuroprune.quantize as quantize

    seen = {}
    real = quantize.quantize_model

    def spy(model, profile, dataset, train_config, **kwargs):
        seen.update(
            train=len(dataset.y_train),
            shape=dataset.input_shape,
            timesteps=train_config.timesteps,
            chip=profile.id,
        )
        return real(model, profile, dataset, train_config, **kwargs)

    monkeypatch.setattr(quantize, "quantize_model", spy)
    result = cli("quantize", tmp_path / "run", "--chip", "tianjic")
    assert result.exit_code in (0, 1), result.stderr  # 1: the pruned net may not fit tianjic
    # 40 training samples less the 10 % validation part held out before training (4 rows)
    assert seen == {"train": 40 - 4, "shape": (1, 6, 6), "timesteps": 3, "chip": "tianjic"}
    _, meta = RunDir(tmp_path / "run-tianjic").load_model("quantized")  # a new run for tianjic
    assert meta["record"]["chip"] == "tianjic" and meta["inputs"]["timesteps"] == 3


# --------------------------------------------------------------------------------------------
# File-system faults


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_file_size_limit_is_one_line_and_keeps_earlier_artifacts(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    keep = {n: (run_dir / n).read_bytes() for n in ("dense.pt", "pruned.pt", "quantized.pt")}
    limit = len(keep["pruned.pt"]) - 1  # the new quantized.pt (larger than pruned.pt) cannot fit
    extra = ["--sparsity", "0.8", "--backend", "none", "--resume", "--quant-epochs", "2"]
    argv = fit_process_argv(tmp_path, *extra)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size(limit),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert proc.returncode == EXIT_IO_ERROR, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "EFBIG" in lines[0] and "quantized.pt" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    for name, data in keep.items():
        assert (run_dir / name).read_bytes() == data, name
    assert not list(run_dir.glob(".quantized.pt*")), "temporary file left behind"


def test_file_in_place_of_the_run_directory(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    line = one_line(fit(tmp_path, "--backend", "none"), EXIT_IO_ERROR)
    assert str(tmp_path / "run") in line
    assert (tmp_path / "run").read_text() == "not a folder"


def test_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rd = RunDir(tmp_path / "run")
    rd.lock_path.write_text(f"{dead.pid}\n")
    started = time.perf_counter()
    with rd.lock():
        assert rd.lock_path.read_text().strip() == str(os.getpid())
    assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------------------------
# A failed simulation still leaves a complete report


@pytest.mark.slow
def test_failed_simulation_is_recorded_in_a_complete_report(tmp_path, monkeypatch):
    import neuroprune.sim as sim
    from neuroprune.core.errors import SimulationError

    def crash(*args, **kwargs):
        raise SimulationError(
            "Lava worker died (signal SIGKILL) without a result",
            where="simulate --backend lava",
            fix="Check the model.",
        )

    monkeypatch.setattr(sim, "simulate", crash)
    result = fit(tmp_path, "--sparsity", "0.8", "--backend", "reference", "--json")
    assert result.exit_code == 3, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report == json.loads(result.stdout)
    assert report["simulation"] is None and report["fit"] is not None
    assert report["errors"][0]["stage"] == "simulate"
    assert "SIGKILL" in report["errors"][0]["message"]
    assert (tmp_path / "run" / "report.md").is_file()
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "recorded in report.json" in lines[0]
