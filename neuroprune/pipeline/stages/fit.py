"""Stage "fit": check the final network against the chip (cores, chips, per-core limits);
fit.json and report.json ``fit``."""

from __future__ import annotations

from dataclasses import replace

from neuroprune.pipeline.context import _Run
from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.run.rundir import FitRecord


def run_fit_check(run: _Run, carry: Carry) -> Carry:
    """The fit check (:func:`neuroprune.fit.rules.check_fit`); report.json ``fit``
    (:class:`FitRecord`). The summary and packing stay on ``run`` for the simulate stage's
    chip-traffic counts."""
    from neuroprune.fit.rules import check_fit  # deferred: imports scipy
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch

    summary = summarize(carry.model, carry.dataset.input_shape, run.cfg.timesteps)
    report = check_fit(summary, run.profile, chips=run.cfg.chips, cores=run.cfg.cores)
    data = report.as_dict()
    run.rundir.write_fit(data)
    run.record.fit = FitRecord(**data)
    run.fitted = (summary, report.packing)
    verdict = "fits" if report.fits else f"does NOT fit ({len(report.violations)} violations)"
    run.emit("fit", f"{verdict}: {report.cores_used} core(s), {report.chips_needed} chip(s)")
    return replace(carry, fits=report.fits)


FIT = Stage("fit", "fit", run_fit_check)
