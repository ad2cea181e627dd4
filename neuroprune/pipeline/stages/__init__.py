"""The fit run's stages, in the order they run (README's pipeline diagram):

dense training -> prune (+ fine-tune) -> quantize -> fit check -> export -> simulate -> report.

Each stage (:class:`Stage`) is one module here with one function ``(run, carry) -> carry`` that
fills its typed section of the :class:`neuroprune.run.rundir.RunRecord`.
"""

from __future__ import annotations

from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.pipeline.stages.dense import DENSE
from neuroprune.pipeline.stages.export import EXPORT
from neuroprune.pipeline.stages.fit import FIT
from neuroprune.pipeline.stages.prune import PRUNE
from neuroprune.pipeline.stages.quantize import QUANTIZE
from neuroprune.pipeline.stages.report import REPORT
from neuroprune.pipeline.stages.simulate import SIMULATE

STAGES: tuple[Stage, ...] = (DENSE, PRUNE, QUANTIZE, FIT, EXPORT, SIMULATE, REPORT)

__all__ = ["STAGES", "Carry", "Stage"]
