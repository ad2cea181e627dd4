"""neuroprune.envs and ``neuroprune backends``: where environments live, their status, an
install that is all or nothing, a layered environment's view of the tool's packages, and the
one-line answer (exit 3, nothing written) when no Python 3.10 exists.

No test here installs from a package index: the environments built here have no
requirements (a venv and the probe only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from neuroprune.core.errors import EXIT_BACKEND_UNAVAILABLE, BackendUnavailableError
from neuroprune.envs import (
    ENVIRONMENTS,
    EnvironmentSpec,
    envs_root,
    find_python,
    install,
    manage,
    require,
    status,
)

ROOT = Path(__file__).resolve().parents[1]
TOOL_SITE = Path(sysconfig.get_paths()["purelib"]).resolve()


def layered_spec(name: str = "scratch", probe: tuple[str, ...] = ("numpy",)) -> EnvironmentSpec:
    """A layered environment with nothing to install: numpy can only come from the tool's."""
    return EnvironmentSpec(
        name=name,
        purpose="test",
        python=None,
        layered=True,
        requirements=(),
        probe=probe,
        why="a test",
        used_for="a test",
    )


def run_in(python: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --------------------------------------------------------------------------------------------
# the location rule


def test_the_variable_names_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPRUNE_ENVS", str(tmp_path / "mine"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    assert envs_root() == tmp_path / "mine"


def test_inside_a_venv_the_root_is_the_venvs_share_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUROPRUNE_ENVS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "base"))
    assert envs_root() == tmp_path / "venv" / "share" / "neuroprune" / "envs"


def test_outside_a_venv_the_root_is_xdg_data_home_or_local_share(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUROPRUNE_ENVS", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "base"))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "base"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert envs_root() == tmp_path / "data" / "neuroprune" / "envs"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert envs_root() == tmp_path / "home" / ".local" / "share" / "neuroprune" / "envs"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # not absolute: ignored (XDG spec)
    assert envs_root() == tmp_path / "home" / ".local" / "share" / "neuroprune" / "envs"


# --------------------------------------------------------------------------------------------
# status


def test_every_registered_environment_is_missing_in_an_empty_root(tmp_path):
    for name in ENVIRONMENTS:
        state = status(name, tmp_path)
        assert (state.ready, state.reason) == (False, "not installed")
        assert state.path == tmp_path / name and state.python == tmp_path / name / "bin/python"


def test_a_folder_without_a_stamp_or_with_another_spec_is_not_ready(tmp_path):
    spec = layered_spec()
    (tmp_path / "scratch").mkdir()
    assert "neuroprune-env.json" in status(spec, tmp_path).reason
    install(spec, root=tmp_path, force=True)
    assert status(spec, tmp_path).ready
    other = EnvironmentSpec(**{**spec.__dict__, "requirements": ("nir==1.0.4",)})
    assert status(other, tmp_path).reason.startswith("installed for other requirements")


def test_an_unknown_name_is_answered_with_the_registered_ones(tmp_path):
    with pytest.raises(Exception) as info:
        status("lavaa", tmp_path)
    assert "'lava'" in str(info.value) and all(n in str(info.value) for n in ENVIRONMENTS)


# --------------------------------------------------------------------------------------------
# install


def test_a_layered_environment_sees_the_tools_packages_after_its_own(tmp_path):
    events = []
    state = install(layered_spec(), progress=events.append, root=tmp_path)
    env = tmp_path / "scratch"
    assert state.ready and state.path == env and state.python == env / "bin/python"
    assert [e["event"] for e in events][0] == "env_begin" and events[-1]["done"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scratch.lock", "scratch"]
    own_site = Path(
        run_in(state.python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    )
    assert own_site.is_relative_to(env)
    pth = own_site / manage.PTH_FILE
    assert str(TOOL_SITE) in pth.read_text()
    answer = json.loads(
        run_in(
            state.python,
            "import json, sys, numpy; "
            "print(json.dumps({'prefix': sys.prefix, 'path': sys.path, 'numpy': numpy.__file__}))",
        )
    )
    assert Path(answer["prefix"]) == env  # built as <name>.partial-<pid>, works after the rename
    path = [str(Path(p).resolve()) if p else p for p in answer["path"]]
    assert path.index(str(own_site.resolve())) < path.index(str(TOOL_SITE))
    assert Path(answer["numpy"]).resolve().is_relative_to(TOOL_SITE)
    # a module in the environment's own site-packages wins over the tool's of the same name
    (own_site / "numpy.py").write_text("SHADOW = True\n")
    assert run_in(state.python, "import numpy; print(numpy.SHADOW)") == "True"
    stamp = json.loads((env / manage.STAMP_FILE).read_text())
    assert stamp["layered"] is True and stamp["tool_env"][0] == str(TOOL_SITE)


def test_an_install_whose_probe_fails_leaves_nothing_in_place(tmp_path):
    broken = layered_spec(probe=("neuroprune_no_such_module",))
    with pytest.raises(BackendUnavailableError) as info:
        install(broken, root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == EXIT_BACKEND_UNAVAILABLE
    assert "scratch" in message and "neuroprune_no_such_module" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scratch.lock"]


def test_a_failed_reinstall_keeps_the_environment_that_was_there(tmp_path):
    install(layered_spec(), root=tmp_path)
    stamp = (tmp_path / "scratch" / manage.STAMP_FILE).read_bytes()
    with pytest.raises(BackendUnavailableError):
        install(layered_spec(probe=("neuroprune_no_such_module",)), root=tmp_path, force=True)
    assert status(layered_spec(), tmp_path).ready
    assert (tmp_path / "scratch" / manage.STAMP_FILE).read_bytes() == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scratch.lock", "scratch"]


def test_a_ready_environment_is_not_rebuilt_and_force_rebuilds_it(tmp_path):
    install(layered_spec(), root=tmp_path)
    marker = tmp_path / "scratch" / "marker"
    marker.write_text("")
    events = []
    install(layered_spec(), progress=events.append, root=tmp_path)
    assert [e["event"] for e in events] == ["env_ready"] and marker.exists()
    install(layered_spec(), root=tmp_path, force=True)
    assert not marker.exists() and status(layered_spec(), tmp_path).ready


def test_folders_of_dead_installs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"scratch.partial-{dead.pid}"
    stale.mkdir(parents=True)
    install(layered_spec(), root=tmp_path)
    assert not stale.exists()


def test_no_python_310_is_one_line_naming_how_to_get_one(tmp_path):
    spec = EnvironmentSpec(**{**layered_spec().__dict__, "python": "3.10", "layered": False})
    with pytest.raises(BackendUnavailableError) as info:
        install(spec, root=tmp_path, find=lambda version: None)
    assert "pyenv install 3.10" in str(info.value) and "PYTHON310" in str(info.value)
    assert not tmp_path.joinpath("scratch").exists()
    with pytest.raises(BackendUnavailableError, match="needs Python 3.10"):
        require(spec, root=tmp_path, find=lambda version: None)
    with pytest.raises(BackendUnavailableError, match="backends install scratch"):
        require(spec, root=tmp_path, find=lambda version: object())


def test_the_search_accepts_only_a_working_interpreter_of_the_version(tmp_path):
    me = Path(sys.executable)
    mine = "{}.{}".format(*sys.version_info[:2])
    not_python = tmp_path / "python9.9"
    not_python.write_text("#!/bin/sh\necho 9 9 9\n")
    not_python.chmod(0o755)
    found = find_python(mine, search=lambda version: [tmp_path / "absent", not_python, me])
    assert found is not None and found.path == me
    assert find_python("3.9", search=lambda version: [me, not_python]) is None


# --------------------------------------------------------------------------------------------
# the command line without Python 3.10


def cli_without_python_310(tmp_path: Path, *args: str, python310: str | None = None):
    """``neuroprune ARGS`` in a fresh interpreter on a machine with no Python 3.10 to find:
    PATH holds an empty folder, HOME and no pyenv, and the system folders searched are none;
    ``python310`` sets PYTHON310."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHON310", "PYENV_ROOT", "PYTHONPATH")
    }
    env.update(
        PATH=str(empty),
        HOME=str(tmp_path / "home"),
        NEUROPRUNE_ENVS=str(tmp_path / "envs"),
        PYTHONPATH=str(ROOT),
        COLUMNS="200",
    )
    if python310:
        env["PYTHON310"] = python310
    code = (
        "import neuroprune.envs.interpreter as search; search.SYSTEM_DIRS = (); "
        "from neuroprune.cli import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def one_line_exit_3(done, *needles: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == EXIT_BACKEND_UNAVAILABLE, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_fit_on_lava_without_python_310_answers_before_writing(tmp_path):
    out = tmp_path / "runs"
    done = cli_without_python_310(tmp_path, "fit", "--chip", "loihi", "--out", str(out))
    one_line_exit_3(
        done,
        "Lava (lava-nc 0.10.0) needs Python 3.10",
        "pyenv install 3.10",
        "PYTHON310",
        "neuroprune backends install lava",
        "--backend reference",
    )
    assert not out.exists() and not (tmp_path / "envs").exists()
    verbose = cli_without_python_310(tmp_path, "-v", "simulate", "missing.nir")
    assert verbose.returncode == EXIT_BACKEND_UNAVAILABLE and "Traceback" in verbose.stderr


def test_a_python310_variable_that_is_not_310_is_named(tmp_path):
    done = cli_without_python_310(
        tmp_path, "simulate", "missing.nir", "--backend", "lava", python310=sys.executable
    )
    one_line_exit_3(done, f"PYTHON310={sys.executable} is not a working Python 3.10")


def test_backends_lists_every_environment_and_install_says_how_to_get_python(tmp_path):
    listing = cli_without_python_310(tmp_path, "backends")
    assert listing.returncode == 0, listing.stderr
    for name in ENVIRONMENTS:
        assert name in listing.stdout
    assert "not installed" in listing.stdout and "NEUROPRUNE_ENVS" in listing.stdout
    assert str(tmp_path / "envs") in listing.stdout
    done = cli_without_python_310(tmp_path, "backends", "install")
    one_line_exit_3(done, "backends install lava", "pyenv install 3.10")
    assert not (tmp_path / "envs" / "lava").exists()
    unknown = cli_without_python_310(tmp_path, "backends", "install", "lavaa")
    assert unknown.returncode == 2 and "lava" in unknown.stderr


@pytest.mark.slow
def test_the_reference_backend_runs_the_whole_fit_without_python_310(tmp_path):
    out = tmp_path / "runs"
    tiny = ("--hidden", "16", "--epochs", "1", "--prune-epochs", "1", "--finetune-epochs", "0")
    done = cli_without_python_310(
        tmp_path,
        "fit",
        "--chip",
        "loihi",
        "--backend",
        "reference",
        "--quant-epochs",
        "0",
        "--samples",
        "20",
        *tiny,
        "--out",
        str(out),
        "--name",
        "tiny",
        "--json",
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["simulation"]["backend"] == "reference" and report["errors"] == []
    assert (out / "tiny" / "model.nir").is_file()
    assert not (tmp_path / "envs").exists()


@pytest.mark.slow  # a venv with pip (ensurepip) and two offline pip runs
def test_a_failed_pip_install_is_one_line_naming_pips_error_and_its_log(tmp_path, monkeypatch):
    """pip offline (no index, no links, no config): the requirement cannot be found."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    spec = EnvironmentSpec(
        **{**layered_spec().__dict__, "requirements": ("neuroprune-no-such-dist==0.0.1",)}
    )
    with pytest.raises(BackendUnavailableError) as info:
        install(spec, root=tmp_path)
    message = str(info.value)
    log = tmp_path / "scratch.install.log"
    assert "\n" not in message and "pip install failed: ERROR:" in message
    assert "neuroprune-no-such-dist" in message and str(log) in message
    assert "neuroprune-no-such-dist" in log.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scratch.lock", "scratch.install.log"]


def test_a_lava_marked_test_fails_naming_make_test_envs_when_the_environment_is_missing(tmp_path):
    """tests/conftest.py: no skip, a failure before the test's fixtures, with the fix."""
    env = {**os.environ, "NEUROPRUNE_ENVS": str(tmp_path / "envs"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "tests/test_lava_worker_env.py",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout
    assert "make test-envs" in done.stdout and "2 error" in done.stdout
    assert "skipped" not in done.stdout and "passed" not in done.stdout


def test_interpreter_version_is_probed_again_when_the_file_changes(tmp_path):
    """The probe's answer is kept per process for one file as it is; a rebuilt interpreter
    (new contents) or one that stops being executable is asked again."""
    from neuroprune.envs.interpreter import interpreter_version

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 3 10 13\n")
    fake.chmod(0o755)
    assert interpreter_version(fake) == "3.10.13"
    assert interpreter_version(fake) == "3.10.13"  # kept
    fake.write_text("#!/bin/sh\necho 3 11 7 # rebuilt\n")
    assert interpreter_version(fake) == "3.11.7"
    fake.chmod(0o644)
    assert interpreter_version(fake) is None
    assert interpreter_version(tmp_path / "missing") is None
