"""One stage of the fit run: its name, the run-record section it fills, what it hands on.

A stage is a function ``(run, carry) -> carry``: ``run`` (:class:`neuroprune.pipeline.context._Run`)
holds the run directory, the chip profile, the resolved configuration and the typed
:class:`neuroprune.run.rundir.RunRecord` the stage fills; ``carry`` (:class:`Carry`) is what the
earlier stages made (the model, the dataset, the budget, the verdicts so far).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuroprune.core.errors import EXIT_DOES_NOT_FIT, EXIT_OK, NeuropruneError
from neuroprune.pipeline.context import _Run

if TYPE_CHECKING:
    from neuroprune.data.split import Holdout
    from neuroprune.fit.budget import Budget


@dataclass(frozen=True)
class Carry:
    """What one stage hands the next: the model so far, the dataset (its training split without
    the validation part: what every training stage trains on), the synapse budget, and
    the verdicts of the fit check, the simulation and the accuracy gate (``--max-accuracy-drop``)
    (True until a stage says otherwise)."""

    model: Any
    dataset: Any
    budget: Budget  # synapses the pruned network may keep (neuroprune.fit.budget)
    fits: bool = True
    verified: bool = True
    meets: bool = True  # the deployed model meets --max-accuracy-drop
    error: NeuropruneError | None = None  # a stage that failed after the run started
    holdout: Holdout | None = None  # the validation cut every decision reads (data.split)

    @property
    def exit_code(self) -> int:
        """0 when the network fits, the simulation agrees and the accuracy gate passes; the
        failed stage's exit code; 1 (``EXIT_DOES_NOT_FIT``: ran but does not fit or meet)
        otherwise."""
        if self.error is not None:
            return self.error.exit_code
        return EXIT_OK if self.fits and self.verified and self.meets else EXIT_DOES_NOT_FIT


def _never(_: Any) -> bool:
    return False


@dataclass(frozen=True)
class Stage:
    """One unit of the fit run.

    ``section`` is the :class:`RunRecord` field the stage fills (None for the report itself);
    ``on_workers(model)`` says whether torchrun ranks > 0 run it too (the training stages).
    """

    name: str
    section: str | None
    run: Callable[[_Run, Carry], Carry]
    on_workers: Callable[[Any], bool] = _never


def measure(run: _Run, model, dataset) -> tuple[float, Any]:
    """``(test accuracy 0..1, network summary)`` of ``model`` on ``dataset``'s test split."""
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.train.loop import evaluate  # deferred: imports spikingjelly, torch

    cfg = run.cfg
    accuracy = evaluate(model, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    return accuracy, summarize(model, dataset.input_shape, cfg.timesteps)
