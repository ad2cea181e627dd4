"""Helpers shared by the benchmark scripts: the machine line every result carries, and a
training-set limiter for smoke runs. Scripts run as ``python benchmarks/NAME.py``, so they
import this module as ``common``."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def machine(threads: int | None = None) -> str:
    """One line: CPU, cores, load, OS, Python and the versions that matter for the figures."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    packages = ", ".join(
        f"{p} {_version(p)}" for p in ("torch", "spikingjelly", "lava-nc", "numpy")
    )
    thread_text = f", {threads} torch thread(s)" if threads is not None else ""
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs visible (load average {load}), "
        f"{platform.platform()}, Python {platform.python_version()}, {packages}{thread_text}"
    )


def limited(dataset, limit: int | None):
    """The dataset with only the first ``limit`` training images (smoke runs)."""
    if not limit:
        return dataset
    return dataclasses.replace(
        dataset, x_train=dataset.x_train[:limit], y_train=dataset.y_train[:limit]
    )


def publish(text: str, out: str | Path | None) -> str:
    """Print a benchmark's markdown result and, when ``out`` is given, write it there
    atomically (what docs/benchmarks.md quotes)."""
    from neuroprune.core.atomic import write_text

    if out:
        write_text(Path(out), text)
    print(text)
    return text


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` of ``values * scale`` (std over seeds; 0 for one seed); the default
    reads fractions as percent."""
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
