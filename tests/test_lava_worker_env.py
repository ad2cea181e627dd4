"""The Lava worker on its Python 3.10 backend environment: what it imports there, and that
every module of neuroprune it loads is valid Python 3.10 and marked so for ruff
(``[tool.ruff.per-file-target-version]`` in pyproject.toml)."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import neuroprune
from neuroprune.cli.app import main
from neuroprune.envs import environment_python, require, status
from neuroprune.sim.lava_backend import worker_env, worker_path

ROOT = Path(__file__).resolve().parents[1]

# In the worker's interpreter, with the worker's environment: import the worker and the Lava
# names it uses (its process models too), then compile every neuroprune module it loaded from
# its source, and report them.
IMPORTS = """
import json, sys
import neuroprune.sim.lava_worker as worker
worker._import_lava()
import neuroprune.sim.lavaext.models
loaded = {m.__name__: m.__file__ for m in list(sys.modules.values())
          if m.__name__.split(".")[0] == "neuroprune" and getattr(m, "__file__", None)}
for path in loaded.values():
    with open(path, encoding="utf-8") as handle:
        compile(handle.read(), path, "exec", dont_inherit=True)
import numpy
print(json.dumps({"python": list(sys.version_info[:2]), "modules": loaded,
                  "numpy": numpy.__version__, "heavy": [m for m in ("torch", "spikingjelly")
                                                         if m in sys.modules]}))
"""


def py310_globs() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    targets = config["tool"]["ruff"]["per-file-target-version"]
    return [glob for glob, version in targets.items() if version == "py310"]


@pytest.mark.lava
def test_the_worker_imports_only_python_310_modules_of_neuroprune_there(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    env = {**worker_env(job)}
    assert env["PYTHONPATH"] == str(worker_path(job))
    done = subprocess.run(
        [str(environment_python("lava")), "-c", IMPORTS],
        capture_output=True,
        text=True,
        env=env,
        cwd=job,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["python"] == [3, 10] and answer["heavy"] == []
    assert int(answer["numpy"].split(".")[0]) < 2
    assert (job / "pythonpath" / "neuroprune").resolve() == Path(neuroprune.__file__).parent
    loaded = {
        name: Path(path).relative_to(job / "pythonpath").as_posix()
        for name, path in answer["modules"].items()
    }
    assert "neuroprune.sim.lava_worker" in loaded and "neuroprune.sim.lavaext.models" in loaded
    globs = py310_globs()
    unmarked = [p for p in loaded.values() if not any(fnmatch.fnmatch(p, g) for g in globs)]
    assert unmarked == [], f"add these to [tool.ruff.per-file-target-version] as py310: {unmarked}"


@pytest.mark.lava
def test_the_lava_environment_is_ready_and_install_skips_it():
    state = status("lava")
    assert state.ready and state.version.startswith("3.10.")
    assert require("lava") == environment_python("lava") == state.python
    result = CliRunner().invoke(main, ["backends", "install", "lava"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"lava: ready at {state.path}" in " ".join(result.output.split())
