"""The Lava worker dies with its parent, whatever kills the parent; stale job directories of
dead runs are swept; SIGTERM is handled like SIGINT by the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from neuroprune.cli.app import handle_errors
from neuroprune.core.errors import EXIT_INTERRUPTED
from neuroprune.sim.lava_backend import JOB_PREFIX, OWNER_FILE, sweep_stale_jobs

ROOT = Path(__file__).resolve().parents[1]
WORKER = b"neuroprune.sim.lava_worker"

PARENT = """
import sys
from pathlib import Path
from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode
from neuroprune.export import export_nir
from neuroprune.models.zoo import build_model
from neuroprune.sim import LavaBackend, simulate

model = build_model("mlp", (1, 8, 8), 10, hidden=(16,), seed=0).eval()
path = export_nir(model, Path(sys.argv[1]), timesteps=4, encoding="poisson",
                  input_shape=(1, 8, 8), chip="loihi")
x = encode(load_dataset("digits").x_test[:4], 4, "poisson", seed=0)
simulate(path, x=x, backend=LavaBackend(fault="hang"), timeout=300)
"""


def workers_of(parent: int) -> list[int]:
    """Live Lava worker processes (and their forked Lava children) started by ``parent``: they
    carry ``NEUROPRUNE_LAVA_OWNER=<parent>`` in their environment."""
    tag = f"NEUROPRUNE_LAVA_OWNER={parent}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if WORKER in cmdline and tag in environ and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def job_dir_of(parent: int) -> Path | None:
    for job in Path(tempfile.gettempdir()).glob(f"{JOB_PREFIX}*"):
        try:
            if json.loads((job / OWNER_FILE).read_text())["parent"] == parent:
                return job
        except (OSError, ValueError):
            continue
    return None


def wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return None


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_parent_leaves_no_worker_and_no_shared_memory(tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "m.nir")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        job = wait_for(lambda: job_dir_of(parent.pid), 120)
        assert job is not None, parent.stderr.read1().decode() if parent.poll() else "no job"
        shm_file = job / "shm.txt"
        names = wait_for(lambda: shm_file.exists() and shm_file.read_text().split(), 120)
        assert names, "Lava never created its shared memory"
        assert workers_of(parent.pid), "no Lava worker running"
        os.kill(parent.pid, sig)
        parent.wait(timeout=10)
        time.sleep(5)
        assert workers_of(parent.pid) == []
        left = [n for n in names if (Path("/dev/shm") / n.lstrip("/")).exists()]
        assert left == [], left
        assert not job.exists()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_stale_job_directories_of_dead_runs_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{JOB_PREFIX}stale"
    stale.mkdir()
    (stale / OWNER_FILE).write_text(json.dumps({"parent": dead.pid, "worker_group": dead.pid}))
    shm = Path("/dev/shm") / f"psm_neuroprune_test_{os.getpid()}"
    shm.write_bytes(b"x")
    (stale / "shm.txt").write_text(f"/{shm.name}\n")
    live = tmp_path / f"{JOB_PREFIX}live"
    live.mkdir()
    (live / OWNER_FILE).write_text(json.dumps({"parent": os.getpid(), "worker_group": dead.pid}))
    unknown = tmp_path / f"{JOB_PREFIX}starting"  # no owner.json yet: never touched
    unknown.mkdir()
    try:
        assert sweep_stale_jobs(tmp_path) == [stale]
        assert not stale.exists() and not shm.exists()
        assert live.exists() and unknown.exists()
    finally:
        shm.unlink(missing_ok=True)


@click.command()
@handle_errors
def _terminated() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)


def test_sigterm_is_handled_like_sigint():
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(_terminated, [])
    assert result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert signal.getsignal(signal.SIGTERM) is before
