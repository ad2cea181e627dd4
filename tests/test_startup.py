"""Start-up cost: deterministic training without importing torch._inductor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from neuroprune.train.loop import deterministic

ROOT = Path(__file__).resolve().parents[1]


def test_deterministic_sets_warn_only_mode_and_restores_it():
    before = torch.get_deterministic_debug_mode()
    with deterministic(0):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        first = torch.rand(3)
    with deterministic(0):
        assert torch.equal(torch.rand(3), first)
    assert torch.get_deterministic_debug_mode() == before


def test_deterministic_does_not_import_inductor():
    code = (
        "import sys\n"
        "from neuroprune.train.loop import deterministic\n"
        "with deterministic(0):\n"
        "    pass\n"
        "print('torch._inductor' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
