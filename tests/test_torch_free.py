"""The torch-free core stays torch-free: every module of it imports without torch.

The packages below L3 (docs/architecture.md), the chip's number formats (``chip/formats``)
among them, must not import torch or SpikingJelly, not even indirectly; ``lint-imports`` checks the import
statements (pyproject.toml), this test checks what an import actually loads, in a fresh
interpreter, for every module found on disk (a new module is covered without editing this file).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import neuroprune

PACKAGE_ROOT = Path(neuroprune.__file__).parent
TORCH_FREE_PACKAGES = ("core", "chip", "graph", "data", "fit", "envs")
HEAVY = ("torch", "spikingjelly")

# Imports each module in turn and prints the first one after which a heavy library is loaded.
PROBE = """
import importlib, json, sys
heavy = {heavy!r}
for name in {modules!r}:
    importlib.import_module(name)
    loaded = [h for h in heavy if h in sys.modules]
    if loaded:
        print(json.dumps({{"module": name, "loaded": loaded}}))
        break
else:
    print(json.dumps({{"module": None, "loaded": []}}))
"""


def module_name(path: Path) -> str:
    """``neuroprune/fit/budget.py`` -> ``neuroprune.fit.budget`` (``__init__`` -> the package)."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def torch_free_modules() -> list[str]:
    """Every module of the torch-free packages, found on disk."""
    names = [
        module_name(path)
        for package in TORCH_FREE_PACKAGES
        for path in sorted((PACKAGE_ROOT / package).rglob("*.py"))
    ]
    return names


def test_every_torch_free_module_imports_without_torch_or_spikingjelly():
    modules = torch_free_modules()
    assert len(modules) > 3 * len(TORCH_FREE_PACKAGES)  # found on disk, not only the packages
    assert "neuroprune.chip.formats.loihi" in modules
    code = PROBE.format(heavy=HEAVY, modules=modules)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert first == {"module": None, "loaded": []}, f"{first['module']} loads {first['loaded']}"
