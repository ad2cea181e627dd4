"""Progress events: one event type (:class:`ProgressEvent`), one sink type (:data:`Progress`)
and one way to send (:func:`emit`).

Every long-running library call (training, pruning, quantization, simulation, the fit run, a
sweep) takes ``progress: Progress | None`` and reports through :func:`emit`; only the CLI
renders the events (:class:`neuroprune.reports.render.ProgressRenderer`).

An event reads like the dict it replaces (``event["event"]``, ``event.get("message")``,
``"total" in event``): the keys are the fields that are set, then the event's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

_NAMED = ("stage", "event", "message", "total", "advance", "done")


@dataclass(frozen=True)
class ProgressEvent(Mapping[str, Any]):
    """One progress report.

    ``stage``: the pipeline stage it belongs to ("dense", "prune", "simulate", "sweep", ...);
    ``event``: what happened ("epoch", "train_begin", "projected", ...); ``message``: a line for
    the console and the run's log; ``total``/``advance``/``done``: a progress bar's length, its
    step (units: epochs or trials), its end; ``metrics``: the numbers that go with it (loss,
    test_accuracy 0..1, sparsity 0..1, ...).
    """

    stage: str | None = None
    event: str | None = None
    message: str | None = None
    total: int | None = None
    advance: int | None = None
    done: bool | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, **values: Any) -> ProgressEvent:
        """An event from keyword values: the named fields, the rest as metrics."""
        named = {k: values.pop(k) for k in _NAMED if k in values}
        return cls(**named, metrics=values)

    def tagged(self, stage: str, *, keep: bool = False) -> ProgressEvent:
        """This event as part of ``stage`` (``keep``: only where it names no stage yet)."""
        return self if keep and self.stage is not None else replace(self, stage=stage)

    def _items(self) -> dict[str, Any]:
        named = {k: getattr(self, k) for k in _NAMED if getattr(self, k) is not None}
        return {**named, **self.metrics}

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


Progress = Callable[[ProgressEvent], None]


def emit(progress: Progress | None, **values: Any) -> None:
    """Send ``ProgressEvent.of(**values)`` to ``progress`` when there is one."""
    if progress is not None:
        progress(ProgressEvent.of(**values))
