"""Custom Lava processes: a file-backed frame source and a per-neuron spike-count sink."""

from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess


class FrameSource(AbstractProcess):
    """Sends row ``t - 1`` of a ``.npy`` array ``[frames, size]`` at Lava step ``t``; zeros after.

    The array is memory-mapped inside the process model, so large inputs never travel through
    Lava's Var initialisation (which costs about 25 us per element).

    Parameters: ``shape`` (``(size,)``), ``path`` (the ``.npy`` file), ``frames`` (rows).
    """

    def __init__(self, *, shape: tuple[int, ...], path: str, frames: int) -> None:
        super().__init__(shape=shape, path=path, frames=frames)
        self.s_out = OutPort(shape=shape)


class CountSink(AbstractProcess):
    """Counts spikes per neuron over the Lava steps ``first_step..last_step`` (inclusive) and
    writes the counts (``int32 [size]``) to ``out_path`` (``.npy``) at step ``final_step``.

    Reading counts through ``Var.get`` would cost about 25 us per element; a file costs nothing.
    ``fault`` (tests only): ``"raise"`` raises inside the model at step 2, ``"hang"`` blocks.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        first_step: int,
        last_step: int,
        final_step: int,
        out_path: str,
        fault: str = "",
    ) -> None:
        super().__init__(
            shape=shape,
            first_step=first_step,
            last_step=last_step,
            final_step=final_step,
            out_path=out_path,
            fault=fault,
        )
        self.a_in = InPort(shape=shape)
