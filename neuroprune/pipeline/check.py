"""``neuroprune check``: the dense network's fit verdict, before any training."""

from __future__ import annotations

from pathlib import Path

from neuroprune.chip.profiles import load_profile
from neuroprune.data.datasets import dataset_shape
from neuroprune.pipeline.config import parse_hidden, resolve_config
from neuroprune.pipeline.preflight import check_model_size

# ------------------------------------------------------------------------------------------
# check


def check_dense(
    chip: str,
    *,
    model="mlp",
    hidden=None,
    dataset="digits",
    data_dir=None,
    chips=None,
    cores=None,
    neuron="lif",
    from_nir=None,
    nir_dt=None,
):
    """Fit report of the untrained dense network (every synapse present), or of the network in
    the NIR file ``from_nir`` (with its weights: zeros there are not synapses)."""
    from neuroprune.fit.rules import check_fit  # deferred: imports scipy

    # the options by fit's rules (an option --from would ignore, --cores 0, ...)
    options = {"chip": chip, "chips": chips, "cores": cores, "model": model, "hidden": hidden}
    options |= {"neuron": neuron, "dataset": dataset, "from_nir": from_nir, "nir_dt": nir_dt}
    resolve_config(None, {k: v for k, v in options.items() if v is not None})
    profile = load_profile(chip)
    shape, classes = dataset_shape(dataset, data_dir)
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.models.zoo import (
        build_model,  # deferred: imports scipy, spikingjelly, torch; torch only once the inputs are valid
    )

    if from_nir:
        from neuroprune.models.nir_model import (
            load_nir_model,  # deferred: imports scipy, spikingjelly, torch
        )

        net = load_nir_model(from_nir, input_shape=shape, num_classes=classes, dt=nir_dt).model
        model = Path(from_nir).stem
    else:
        widths = parse_hidden(hidden) if hidden else None
        check_model_size(model, widths, shape, classes)
        net = build_model(model, shape, classes, hidden=widths, neuron=neuron)
    summary = summarize(net, shape, 1, name=model)
    return check_fit(summary, profile, chips=chips, cores=cores)
