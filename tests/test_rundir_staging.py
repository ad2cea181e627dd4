"""Runs are never lost: a new run is built beside the folder and replaces the earlier run only
when it completes (issue 25, item 9's first sentence).

The swap itself (:class:`neuroprune.run.rundir.RunBuild`) is tested on folders of plain files;
the CLI tests run a first `fit`, then a second `fit` into the same folder that fails at every
stage, hits a file-size limit, or is killed (SIGINT, SIGTERM, SIGKILL) at random points: the
first run's files are byte-identical every time, and `fit --resume` completes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fit_args import tiny_fit_args

from neuroprune.cli.app import main
from neuroprune.core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_IO_ERROR
from neuroprune.run import rundir as rundir_module
from neuroprune.run.rundir import PARTIAL_MARK, RunDir, RunLockedError

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_fit_args(sparsity=0.8)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative names)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def beside(folder: Path) -> list[str]:
    """The hidden entries next to ``folder`` that belong to it (staging, lock, ...)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


def fit_args(out: Path, seed: int, *extra: str) -> list[str]:
    head = ["fit", "--chip", "loihi", "--out", str(out), "--name", "run", *TINY]
    return [*head, "--seed", str(seed), *extra]


def process_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------------------------
# The swap, on folders of plain files


def make_run(folder: Path, tag: str) -> None:
    """A folder that looks like a finished run (its run files hold ``tag``)."""
    (folder / "plots").mkdir(parents=True)
    for name in ("config.yaml", "dense.pt", "report.json", "log.txt"):
        (folder / name).write_text(f"{tag} {name}\n")
    (folder / "plots" / "training.png").write_text(f"{tag} png\n")


def test_publish_replaces_the_run_in_one_step_and_keeps_the_users_files(tmp_path):
    target = tmp_path / "run"
    make_run(target, "old")
    (target / "notes.txt").write_text("mine\n")
    (target / "data").mkdir()
    (target / "data" / "x.csv").write_text("1,2\n")
    (target / "plots" / "sketch.svg").write_text("<svg/>\n")
    (target / "plots" / "stale.png").write_text("an old run's plot\n")
    notes_inode = (target / "notes.txt").stat().st_ino
    with RunDir(target).build() as build:
        assert build.staging.path == tmp_path / ".run.staging"
        assert (build.staging / PARTIAL_MARK).is_file()
        (build.staging / "config.yaml").write_text("new config.yaml\n")
        (build.staging / "plots").mkdir()
        (build.staging / "plots" / "training.png").write_text("new png\n")
        assert (target / "config.yaml").read_text() == "old config.yaml\n"  # not yet
        build.publish()
    files = snapshot(target)
    assert sorted(files) == [
        "config.yaml",
        "data/x.csv",
        "notes.txt",
        "plots/sketch.svg",
        "plots/training.png",
    ]
    assert (target / "config.yaml").read_text() == "new config.yaml\n"
    assert (target / "notes.txt").stat().st_ino == notes_inode  # the user's file, linked
    assert beside(target) == []  # no staging folder, no lock, nothing aside


@pytest.mark.parametrize("resumable", [True, False])
def test_an_error_before_publishing_leaves_the_earlier_run_byte_identical(tmp_path, resumable):
    target = tmp_path / "run"
    make_run(target, "old")
    before = snapshot(target)
    with pytest.raises(RuntimeError), RunDir(target).build(resumable=resumable) as build:
        (build.staging / "config.yaml").write_text("new\n")
        raise RuntimeError("a late failure")
    assert snapshot(target) == before
    # a fit's partial run stays for --resume; a command's rewrite is thrown away
    assert beside(target) == ([".run.staging"] if resumable else [])


def test_resume_continues_the_partial_run_and_a_fresh_fit_deletes_it(tmp_path):
    target = tmp_path / "run"
    make_run(target, "old")
    with pytest.raises(KeyboardInterrupt), RunDir(target).build() as build:
        (build.staging / "dense.pt").write_text("partial dense\n")
        raise KeyboardInterrupt
    with RunDir(target).build(resume=True) as build:
        assert (build.staging / "dense.pt").read_text() == "partial dense\n"
        taken = build.take(build.target, ["dense.pt", "report.json"])
        assert taken == ["report.json"]  # the partial's own dense.pt wins
        assert (build.staging / "report.json").stat().st_ino == (
            target / "report.json"
        ).stat().st_ino
    with RunDir(target).build() as build:  # no --resume: start anew
        assert sorted(p.name for p in build.staging.path.iterdir()) == [PARTIAL_MARK]


def test_a_command_rewriting_the_run_leaves_a_fits_partial_run(tmp_path):
    target = tmp_path / "run"
    make_run(target, "old")
    with pytest.raises(KeyboardInterrupt), RunDir(target).build() as build:
        (build.staging / "dense.pt").write_text("partial dense\n")
        raise KeyboardInterrupt
    with RunDir(target).build(resumable=False) as build:
        assert build.staging.path == tmp_path / ".run.update"
        build.take(build.target, ["config.yaml"])
        build.publish()
    assert (tmp_path / ".run.staging" / "dense.pt").read_text() == "partial dense\n"


def test_a_run_reached_through_a_link_is_replaced_where_it_is(tmp_path):
    real = tmp_path / "disk" / "run"
    make_run(real, "old")
    (tmp_path / "runs").mkdir()
    link = tmp_path / "runs" / "run"
    link.symlink_to(real, target_is_directory=True)
    with RunDir(link).build() as build:
        assert build.staging.path == tmp_path / "disk" / ".run.staging"
        (build.staging / "config.yaml").write_text("new\n")
        assert build.publish() == link
    assert link.is_symlink() and (link / "config.yaml").read_text() == "new\n"
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["run"]


def test_a_staging_folder_without_the_partial_mark_is_never_resumed(tmp_path):
    target = tmp_path / "run"
    make_run(target, "new")
    make_run(tmp_path / ".run.staging", "old")  # an earlier run, left by a swap killed after it
    with RunDir(target).build(resume=True) as build:
        assert sorted(p.name for p in build.staging.path.iterdir()) == [PARTIAL_MARK]


def test_swap_without_rename_exchange(tmp_path, monkeypatch):
    """Where the file system cannot exchange two folders: two renames; when the second fails,
    the first is undone (the earlier run byte-identical)."""
    monkeypatch.setattr(rundir_module, "_exchange", lambda a, b: False)
    target = tmp_path / "run"
    make_run(target, "old")
    before = snapshot(target)
    real_rename = os.rename

    def second_rename_fails(src, dst):
        if Path(src).name == ".run.staging":
            raise OSError(13, "Permission denied", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError), RunDir(target).build() as build:
        (build.staging / "config.yaml").write_text("new\n")
        build.publish()
    assert snapshot(target) == before

    monkeypatch.setattr(os, "rename", real_rename)
    with RunDir(target).build() as build:
        (build.staging / "config.yaml").write_text("new\n")
        build.publish()
    assert (target / "config.yaml").read_text() == "new\n"
    assert not (target / "dense.pt").exists()
    assert beside(target) == []


def test_a_failed_swap_leaves_the_earlier_run(tmp_path, monkeypatch):
    def cross_device(a, b):
        raise OSError(18, "Invalid cross-device link", str(b))

    monkeypatch.setattr(rundir_module, "_exchange", cross_device)
    target = tmp_path / "run"
    make_run(target, "old")
    before = snapshot(target)
    with pytest.raises(OSError), RunDir(target).build() as build:
        (build.staging / "config.yaml").write_text("new\n")
        build.publish()
    assert snapshot(target) == before
    # the mark went before the swap: that staging folder is no partial run to resume
    assert not (tmp_path / ".run.staging" / PARTIAL_MARK).exists()


def test_a_swap_killed_between_its_renames_is_undone_by_the_next_writer(tmp_path):
    target = tmp_path / "run"
    make_run(tmp_path / "reference", "old")
    before = snapshot(tmp_path / "reference")
    # the state a SIGKILL between "run -> .run.replaced" and ".run.staging -> run" leaves
    shutil.copytree(tmp_path / "reference", tmp_path / ".run.replaced")
    make_run(tmp_path / ".run.staging", "new")
    with RunDir(target).lock():
        pass
    assert snapshot(target) == before
    assert beside(target) == [".run.staging"]  # no mark: deleted by the next build
    with RunDir(target).build(resume=True) as build:
        assert sorted(p.name for p in build.staging.path.iterdir()) == [PARTIAL_MARK]


def test_a_second_writer_is_refused_while_a_run_is_being_built(tmp_path):
    target = tmp_path / "run"
    with RunDir(target).build(), pytest.raises(RunLockedError):
        RunDir(target).acquire()


def test_interrupts_wait_for_the_swap(tmp_path):
    seen = []
    with pytest.raises(KeyboardInterrupt), rundir_module._signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        seen.append("the swap finished")
    assert seen == ["the swap finished"]


# --------------------------------------------------------------------------------------------
# A second fit into the folder of a finished run


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A finished run (seed 0) with a simulation: every artifact present."""
    out = tmp_path_factory.mktemp("first")
    result = cli(*fit_args(out, 0, "--backend", "reference"))
    assert result.exit_code == 0, result.stderr
    return out / "run"


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output + result.stderr, result.stderr
    return lines[0]


def interrupted_import(message: str) -> ImportError:
    """What an extension module interrupted while it initialises raises (pybind11)."""
    error = ImportError(f"initialization failed ({message})")
    error.__cause__ = KeyboardInterrupt()
    return error


STAGE_NAMES = ("dense", "prune", "quantize", "fit", "export", "simulate", "report")
FAILURES = [(stage, RuntimeError) for stage in STAGE_NAMES]
FAILURES += [("prune", KeyboardInterrupt), ("report", KeyboardInterrupt)]
FAILURES += [("export", interrupted_import)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("failing", "error"), FAILURES, ids=[f"{s}-{e.__name__}" for s, e in FAILURES]
)
def test_a_second_fit_failing_at_any_stage_leaves_the_first_run(
    first_run, tmp_path, monkeypatch, failing, error
):
    """A crash (an internal error, exit 5) in any stage of a second fit, or an interrupt
    there (exit 130): the first run's files byte-identical, the partial run beside it; then
    --resume reuses exactly the models finished before the failure, and completes."""
    import neuroprune.pipeline.run as pipeline_run
    from neuroprune.pipeline.stages import STAGES
    from neuroprune.pipeline.stages.base import Stage

    target = copy_of(first_run, tmp_path)
    before = snapshot(target)

    def crash(run, carry):
        raise error(f"crash in {failing}")

    broken = tuple(Stage(s.name, s.section, crash) if s.name == failing else s for s in STAGES)
    monkeypatch.setattr(pipeline_run, "STAGES", broken)
    result = cli(*fit_args(tmp_path, 1, "--backend", "reference"))
    if error in (KeyboardInterrupt, interrupted_import):
        assert result.exit_code == EXIT_INTERRUPTED, result.stderr
        assert "partial run is kept for --resume" in one_error_line(result)
    else:
        assert result.exit_code == EXIT_INTERNAL, result.stderr
        assert f"crash in {failing}" in one_error_line(result)
    assert snapshot(target) == before
    partial = tmp_path / ".run.staging"
    assert (partial / PARTIAL_MARK).is_file()

    monkeypatch.setattr(pipeline_run, "STAGES", STAGES)
    resumed = cli(*fit_args(tmp_path, 1, "--backend", "reference", "--resume"))
    assert resumed.exit_code == 0, resumed.stderr
    log = (target / "log.txt").read_text()
    done_before = STAGE_NAMES[: STAGE_NAMES.index(failing)]
    for stage, file in (
        ("dense", "dense.pt"),
        ("prune", "pruned.pt"),
        ("quantize", "quantized.pt"),
    ):
        assert (f"reused {file}" in log) == (stage in done_before), (stage, log)
    assert json.loads((target / "report.json").read_text())["config"]["seed"] == 1
    assert beside(target) == []


@pytest.mark.slow
def test_a_file_size_limit_in_a_second_fit_leaves_the_first_run(first_run, tmp_path):
    """A fault only the file system sees, late in the run (ulimit -f below model.nir's size,
    the largest file, written by the export stage after training: exit 4): the first run
    byte-identical."""
    target = copy_of(first_run, tmp_path)
    before = snapshot(target)
    largest_model = max(f.stat().st_size for f in target.glob("*.pt"))
    limit = (largest_model + (target / "model.nir").stat().st_size) // 2  # the models fit

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "neuroprune", *fit_args(tmp_path, 1, "--backend", "none")],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        env=process_env(),
        timeout=600,
    )
    assert proc.returncode == EXIT_IO_ERROR, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # one line: HDF5's message (with a time stamp ending in a newline) no longer reaches it
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "model.nir" in lines[0] and "EFBIG" in lines[0], proc.stderr
    assert snapshot(target) == before


# --------------------------------------------------------------------------------------------
# Must show: 20 kills at random points of a second fit


KILLS = 20
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def start_fit(out: Path, seed: int, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "neuroprune", *fit_args(out, seed, "--backend", "none", *extra)]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=process_env()
    )


def wait_for_its_staging(proc: subprocess.Popen, staging: Path, timeout: float = 300) -> float:
    """Seconds until ``proc`` marked the staging folder as its own (the partial mark holds its
    pid); nothing of the run folder is written before that."""
    started = time.perf_counter()
    mark = staging / PARTIAL_MARK
    while time.perf_counter() - started < timeout:
        try:
            if mark.read_text().strip() == str(proc.pid):
                return time.perf_counter() - started
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"fit ended before writing: {proc.stderr.read()}")
        time.sleep(0.005)
    raise AssertionError("no staging folder")


@pytest.mark.slow
def test_kills_at_random_points_of_a_second_fit_never_touch_the_first_run(first_run, tmp_path):
    """20 signals (SIGINT, SIGTERM, SIGKILL, seeded order) at seeded random points of a second
    fit into the folder of a finished run, over the measured time that fit spends writing:
    every time the first run's files are byte-identical. Then `fit --resume` completes.

    The time is measured on a probe fit, and shortened to a fit that completed before its
    signal came (the machine may be less loaded than during the probe): such a fit replaced
    the run (checked complete), the first run is put back and the draw repeated."""
    rng = random.Random(25)
    target = copy_of(first_run, tmp_path)
    pristine = snapshot(target)
    keep = tmp_path / "pristine"
    shutil.copytree(target, keep)

    # measure: how long a complete second fit writes (from its staging folder to the swap)
    probe = start_fit(tmp_path / "probe", 1)
    wait_for_its_staging(probe, tmp_path / "probe" / ".run.staging")
    started = time.perf_counter()
    while not (tmp_path / "probe" / "run").is_dir() and probe.poll() is None:
        time.sleep(0.005)
    writing = time.perf_counter() - started
    assert probe.wait(timeout=600) == 0, probe.stderr.read()

    signals = [SIGNALS[i % 3] for i in range(KILLS)]
    rng.shuffle(signals)
    landed, completed = [], 0
    while len(landed) < KILLS:
        assert completed < KILLS, "the second fit kept completing before the signal"
        sig, delay = signals[len(landed)], rng.uniform(0, writing)
        proc = start_fit(tmp_path, 1)
        wait_for_its_staging(proc, tmp_path / ".run.staging")
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        now = snapshot(target)
        if now != pristine:  # the signal came after the swap: the second run is complete
            config = json.loads((target / "report.json").read_text())["config"]
            assert config["seed"] == 1 and "report.md" in now, "a mixed run directory"
            completed += 1
            if finished:  # this fit ended within ``delay``: faster than the probe
                writing = min(writing, delay)
            shutil.rmtree(target)
            shutil.copytree(keep, target)
            continue
        # SIGINT and SIGTERM: exit 130 and the one line, every time (never -2, the death by
        # SIGINT CPython chose when the interrupt had ended a string exec a library ran;
        # neuroprune.cli.app.exit_decided)
        expected = -signal.SIGKILL if sig == signal.SIGKILL else EXIT_INTERRUPTED
        assert proc.returncode == expected, (sig, proc.returncode, err)
        if sig != signal.SIGKILL:
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("interrupted"), err
        landed.append((sig.name, round(delay, 2), proc.returncode))
    assert snapshot(target) == pristine
    assert {name for name, _, _ in landed} == {"SIGINT", "SIGTERM", "SIGKILL"}

    partial = tmp_path / ".run.staging"
    had_dense = (partial / "dense.pt").is_file() and (partial / PARTIAL_MARK).is_file()
    resumed = subprocess.run(
        [sys.executable, "-m", "neuroprune", *fit_args(tmp_path, 1, "--backend", "none")]
        + ["--resume"],
        capture_output=True,
        text=True,
        env=process_env(),
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((target / "report.json").read_text())
    assert report["config"]["seed"] == 1 and report["fit"]["fits"]
    assert ("reused dense.pt" in (target / "log.txt").read_text()) == had_dense
    assert beside(target) == []
    print(f"writing time {writing:.2f} s; kills {landed}; {completed} completed before the signal")
