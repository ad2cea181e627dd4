"""Contract tests over every registry: each entry satisfies its interface, and the names the
config, the profile reader and the command line accept are exactly the registry's names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroprune.chip.capacity import CAPACITY_MODELS, CapacityModel, capacity_model
from neuroprune.chip.formats import QUANTIZERS, Quantizer
from neuroprune.chip.profiles import list_profiles, load_profile
from neuroprune.cli.app import main
from neuroprune.core.errors import ConfigError, ModelError, ProfileError
from neuroprune.core.registry import Registry, lookup
from neuroprune.core.summary import NetworkSummary, dense_layer
from neuroprune.data.datasets import DATASETS, canonical_name
from neuroprune.export.formats import EXPORTERS, ExportFormat
from neuroprune.fit.rules import check_fit
from neuroprune.models.registry import MODEL_ZOO
from neuroprune.pipeline.config import RunConfig, choices, scheduled_methods
from neuroprune.pruning.registry import PRUNING_METHODS, method_entry
from neuroprune.pruning.schedulers import SCHEDULERS
from neuroprune.sim.backends import SIM_BACKENDS, get_backend

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = {
    "capacity models": CAPACITY_MODELS,
    "weight formats": QUANTIZERS,
    "pruning methods": PRUNING_METHODS,
    "schedulers": SCHEDULERS,
    "simulator backends": SIM_BACKENDS,
    "model zoo": MODEL_ZOO,
    "export formats": EXPORTERS,
}
SHIPPED = {p.id: p for p in list_profiles()}


def small_summary() -> NetworkSummary:
    """A 16-12-4 network, half of its synapses pruned."""
    rng = np.random.default_rng(0)
    layers = []
    for i, (n_in, n_out) in enumerate(((16, 12), (12, 4))):
        w = np.round(rng.normal(size=(n_out, n_in)) * 4)
        w[rng.random(w.shape) > 0.5] = 0
        layers.append(dense_layer(f"fc{i}", w, weight_bits=8))
    return NetworkSummary(tuple(layers), input_shape=(16,))


def command(name: str):
    return main.commands[name]


def option(cmd, flag: str):
    return next(p for p in cmd.params if flag in p.opts)


# --------------------------------------------------------------------------------------------
# every registry


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_registry_lists_names_and_refuses_unknown_ones_with_a_suggestion(name):
    registry = REGISTRIES[name]
    assert isinstance(registry, Registry) and len(registry) > 0
    names = registry.names()
    assert len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)
    first = names[0]
    assert lookup(registry, first) is registry.get(first)
    with pytest.raises(registry.error) as info:
        registry.get(first + "x")
    err = info.value
    assert err.message == f"unknown {registry.what}" and err.value == first + "x"
    assert repr(first) in err.fix and all(n in err.fix for n in names)


def test_registry_names_are_read_without_torch():
    code = (
        "import sys\n"
        "import neuroprune.cli\n"
        "from neuroprune.pruning.registry import PRUNING_METHODS\n"
        "from neuroprune.sim.backends import SIM_BACKENDS\n"
        "from neuroprune.models.registry import MODEL_ZOO\n"
        "from neuroprune.export.formats import EXPORTERS\n"
        "from neuroprune.chip.formats import QUANTIZERS\n"
        "names = [*PRUNING_METHODS, *SIM_BACKENDS, *MODEL_ZOO, *EXPORTERS, *QUANTIZERS]\n"
        "print('torch' in sys.modules, 'scipy' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------
# capacity models (synapse encodings)


def test_every_shipped_encoding_is_registered_and_every_registered_one_is_shipped():
    shipped = {p.core.encoding.kind for p in SHIPPED.values()}
    assert shipped == set(CAPACITY_MODELS)


@pytest.mark.parametrize("kind", CAPACITY_MODELS.names())
def test_every_capacity_model_answers_its_interface_on_a_small_network(kind):
    profile = next(p for p in SHIPPED.values() if p.core.encoding.kind == kind)
    cls = CAPACITY_MODELS.get(kind)
    assert issubclass(cls, CapacityModel) and cls.kind == kind
    model = capacity_model(profile)
    assert isinstance(model, cls)
    for field in cls.required_fields:
        assert getattr(profile.core.encoding, field) is not None
    if cls.needs_core_memory:
        assert profile.core.synapse_memory_bits is not None
    summary = small_summary()
    assert model.neurons_max > 0 and model.input_copies() >= 1
    assert model.cores_lower_bound(summary) >= 1
    assert isinstance(model.unprunable_excess(summary, profile.cores, 1), list)
    assert isinstance(model.input_blocks(summary), dict)
    per_core = model.synapses_per_core()
    assert per_core is None or per_core > 0
    usage = model.usage(model.load([]))
    assert usage.neurons == 0 and usage.input_axons == 0 and model.holds(model.load([]))
    report = check_fit(summary, profile)
    assert report.cores_used >= 1 and isinstance(report.fits, bool)


# --------------------------------------------------------------------------------------------
# weight formats


def test_every_shipped_weight_format_has_a_quantizer():
    assert {p.weights.format for p in SHIPPED.values()} <= set(QUANTIZERS)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_every_quantizer_is_registered_under_its_name(name):
    quantizer = QUANTIZERS.get(name)
    assert isinstance(quantizer, Quantizer) and quantizer.name == name


def test_a_profile_with_an_unknown_weight_format_names_the_known_ones(tmp_path):
    path = tmp_path / "chip.yaml"
    text = (ROOT / "examples" / "smallchip.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("format: int", "format: intx"), encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert "weights.format" in str(info.value) and "loihi" in str(info.value)


# --------------------------------------------------------------------------------------------
# pruning methods and schedulers


@pytest.mark.parametrize("name", PRUNING_METHODS.names())
def test_every_method_is_a_valid_method_and_its_facts_match_its_callback(name):
    assert RunConfig(method=name).method == name
    entry = method_entry(name)
    assert entry.name == name
    cls = entry.method_class()
    if cls is None:  # a composite: run by the structured recipe
        assert entry.structured and entry.then_stds
        return
    assert cls.name == name
    assert entry.structured == getattr(cls, "structured", False)
    assert entry.scheduled == (cls.default_scheduler is not None)


def test_scheduler_is_accepted_exactly_for_scheduled_methods():
    for name in PRUNING_METHODS:
        if name in scheduled_methods():
            assert RunConfig(method=name, scheduler="linear").scheduler == "linear"
        else:
            with pytest.raises(ConfigError):
                RunConfig(method=name, scheduler="linear")


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_is_a_valid_scheduler_and_runs_from_0_to_1(name):
    assert RunConfig(scheduler=name).scheduler == name
    f = SCHEDULERS.get(name)
    assert f(0.0) == pytest.approx(0.0, abs=1e-12) and f(1.0) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# simulator backends, datasets, models, export formats


@pytest.mark.parametrize("name", choices("backend"))
def test_every_backend_choice_resolves(name):
    assert RunConfig(backend=name).backend == name
    if name == "none":
        return
    backend = get_backend(name)
    assert callable(backend.run) and callable(backend.check_available)


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_name_is_accepted_by_config(name):
    assert canonical_name(name) == name
    assert RunConfig(dataset=name).dataset == name


@pytest.mark.parametrize("name", MODEL_ZOO.names())
def test_every_zoo_model_builds(name):
    import torch  # deferred: imports torch

    from neuroprune.models import build_model

    model = build_model(name, (1, 8, 8), 10, hidden=(4, 4))
    assert isinstance(model, torch.nn.Module)
    assert RunConfig(model=name).model == name


def test_unknown_model_is_a_model_error_naming_the_zoo():
    from neuroprune.models import build_model

    with pytest.raises(ModelError) as info:
        build_model("vg", (1, 8, 8), 10)
    assert "'vgg'" in info.value.fix and "PATH.py:FACTORY" in info.value.fix


@pytest.mark.parametrize("name", EXPORTERS.names())
def test_every_export_format_names_its_exporter(name):
    fmt = EXPORTERS.get(name)
    assert isinstance(fmt, ExportFormat) and fmt.name == name and fmt.suffix.startswith(".")
    assert callable(fmt.export)


# --------------------------------------------------------------------------------------------
# the command line


def test_cli_choices_equal_the_registry_names():
    assert list(option(command("export"), "--format").type.choices) == list(EXPORTERS)
    assert list(option(command("simulate"), "--backend").type.choices) == list(SIM_BACKENDS)
    assert list(option(command("check"), "--neuron").type.choices) == list(choices("neuron"))


@pytest.mark.parametrize(
    ("flag", "names"),
    [
        ("--method", PRUNING_METHODS.names()),
        ("--scheduler", SCHEDULERS.names()),
        ("--backend", choices("backend")),
        ("--dataset", DATASETS),
        ("--model", MODEL_ZOO.names()),
        ("--chip", tuple(SHIPPED)),
    ],
)
def test_fit_help_lists_every_registered_name_and_the_default(flag, names):
    help_text = option(command("fit"), flag).help
    assert all(name in help_text for name in names), help_text
    assert "[default: " in help_text


def test_fit_help_shows_a_default_for_every_option():
    for param in command("fit").params:
        if param.name in ("config_file", "as_json", "help", "sparsity", "chips", "cores"):
            continue
        if param.name in ("data_dir", "from_nir", "train_dense"):
            continue
        assert "[default: " in (param.help or ""), param.name
