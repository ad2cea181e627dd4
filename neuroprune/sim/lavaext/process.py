"""Custom Lava processes: a file-backed frame source, a per-neuron spike-count sink and a
sample-batched Sparse."""

from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


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
    ``graded``: ``a_in`` carries spike counts (a multi-spike chip arithmetic), which it adds up.
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
        graded: bool = False,
    ) -> None:
        super().__init__(
            shape=shape,
            first_step=first_step,
            last_step=last_step,
            final_step=final_step,
            out_path=out_path,
            fault=fault,
            graded=graded,
        )
        self.a_in = InPort(shape=shape)


class BatchedSparse(AbstractProcess):
    """Lava's ``Sparse`` for ``batch`` independent samples that share one weight matrix.

    ``a_out = kron(I_batch, W) s_in`` (sample-major: sample ``i`` owns inputs
    ``i*n_in ... (i+1)*n_in - 1`` and outputs ``i*n_out ...``), computed as ``W S`` with
    ``S = s_in.reshape(batch, n_in).T``, so ``W`` is stored once instead of ``batch`` times.
    The process models subclass Lava's own Sparse models and keep their arithmetic (float
    ``W.dot``; fixed point: Lava's sign-mode detection, 8-bit clipping, LSB truncation and
    ``weight_exp`` shift); only the product is batched (same per-row summation order).

    ``delay`` (whole steps, default 0) holds every product that many extra steps in a FIFO
    before ``a_out`` sends it (Lava's Sparse already adds one step): projections from sources at
    different depths of a graph then reach one population in the same step.

    Parameters: ``weights`` (``n_out x n_in`` CSR), ``batch``, ``delay``, and Sparse's
    ``num_message_bits``, ``weight_exp``, ``num_weight_bits``.
    """

    def __init__(
        self,
        *,
        weights,
        batch: int,
        num_message_bits: int = 1,
        weight_exp: int = 0,
        num_weight_bits: int = 8,
        delay: int = 0,
    ) -> None:
        super().__init__(
            batch=batch,
            delay=int(delay),
            num_message_bits=num_message_bits,
            weight_exp=weight_exp,
            num_weight_bits=num_weight_bits,
        )
        weights = weights.tocsr()
        rows, cols = weights.shape
        self.s_in = InPort(shape=(batch * cols,))
        self.a_out = OutPort(shape=(batch * rows,))
        self.weights = Var(shape=weights.shape, init=weights)
        self.a_buff = Var(shape=(batch * rows,), init=0)
        self.num_message_bits = Var(shape=(1,), init=num_message_bits)


class ChipNeuron(AbstractProcess):
    """A population running a registered chip arithmetic (:mod:`neuroprune.chip.arithmetic`)
    on its integer input: ``a_in`` carries integers (as floats, exact below 2**53: float Sparse
    products of integer weights, or an injected current), ``s_out`` the spikes.

    The state lives in the process model and is zeroed once, at Lava step ``reset_offset``,
    before that step's input (as ``LIFReset`` does), so what the pipeline fill integrated is
    discarded.

    Parameters: ``shape``, ``bias`` (per neuron, weight LSBs), ``reset_offset``, and ``chip``:
    the arithmetic's name and the layer's integer words (``arithmetic``, ``exp_tc``,
    ``r_membrane``, ``v_thresh``, ``v_reset``, ``v_rest``, ``t_refract``, ``shift``,
    ``input_shift`` for ``spinnaker_lif``; ``TrueNorthLayer.words`` for ``truenorth``;
    ``facts``, the layer's ``LayerFacts``, for any other arithmetic), ``graded``: it sends spike
    counts (several spikes per step).
    """

    def __init__(self, *, shape: tuple[int, ...], bias, reset_offset: int, chip: dict) -> None:
        super().__init__(shape=shape, bias=bias, reset_offset=reset_offset, chip=chip)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class SampleCountSink(AbstractProcess):
    """Counts spikes per neuron and sample when ``samples`` samples stream through one network
    back to back, ``steps`` Lava steps each: sample ``n`` owns the steps
    ``first_step + n steps .. first_step + (n + 1) steps - 1``. Writes the counts (``int32
    [samples, *shape]``) to ``out_path`` (``.npy``) at step ``first_step + samples steps - 1``.
    """

    def __init__(
        self, *, shape: tuple[int, ...], first_step: int, steps: int, samples: int, out_path: str
    ) -> None:
        super().__init__(
            shape=shape, first_step=first_step, steps=steps, samples=samples, out_path=out_path
        )
        self.a_in = InPort(shape=shape)
