"""The bad-input catalogue: every case is answered with its exit code and ONE line naming the
file or field, the value and a fix, with no traceback, and the bytes of an existing run
directory stay unchanged. Cases span chip profiles, config files, command-line options, data
folders, run directories, user models and NIR files; none trains or starts Lava."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.core.errors import EXIT_IO_ERROR

FIX_WORDS = (
    "Use ",
    "Give ",
    "Pass ",
    "Choose ",
    "Run ",
    "Rerun ",
    "Check ",
    "Did you mean",
    "Remove ",
    "Wait ",
    "See ",
    "see ",
    "Leave ",
    "Export ",
    "Define ",
    "For example",
    "--help",
    "Make ",
    "Return ",
    "Put ",
    "Fix ",
    "Add ",
    "Example",
    "Set ",
    "Expected",
    "expected",
    "Copy ",
    "Install ",
    "Download ",
    "Raise ",
    "pass ",
    "must ",
    "Free ",
    "Lower ",
    "Start ",
    "Keep ",
    "Write ",
    "Change ",
    "narrower",
    "plain",
    "Create ",
    "Replace ",
)
TINY = [
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--prune-epochs",
    "1",
    "--finetune-epochs",
    "0",
    "--quant-epochs",
    "0",
    "--backend",
    "none",
]

GOOD_PROFILE = Path(__file__).resolve().parents[1] / "examples" / "mychip.yaml"


def _idx(array: np.ndarray) -> bytes:
    """IDX: two zero bytes, dtype code 0x08 (uint8), ndim, big-endian uint32 sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.tobytes()


def _mnist(folder: Path, n_labels: int = 10, truncate: bool = False, magic: bool = True) -> None:
    folder.mkdir()
    images = np.zeros((10, 4, 4), np.uint8)
    labels = np.zeros(n_labels, np.uint8)
    for prefix in ("train", "t10k"):
        raw = _idx(images)
        raw = raw[:-7] if truncate else raw
        raw = raw if magic else b"\x12\x34" + raw[2:]
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(raw)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))


USER_MODELS = {
    "exits.py": "import sys\ndef make(input_shape, num_classes):\n    sys.exit(7)\n",
    "raises.py": "def make(input_shape, num_classes):\n    raise ValueError('bad width')\n",
    "none.py": "def make(input_shape, num_classes):\n    return None\n",
    "syntax.py": "def make(input_shape, num_classes)\n    return None\n",
    "relu.py": (
        "import torch\nfrom spikingjelly.activation_based import layer\n"
        "def make(input_shape, num_classes):\n"
        "    return torch.nn.Sequential(layer.Flatten(), torch.nn.ReLU())\n"
    ),
    "other.py": "def other(input_shape, num_classes):\n    return None\n",
    "exits_on_import.py": "import sys\nsys.exit(3)\n",
}


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def _run_dir(folder: Path, config: object = None, **files: object) -> Path:
    """A run directory with ``config.yaml`` (nested ``config:`` unless given) and ``files``."""
    folder.mkdir(parents=True)
    body = (
        {"config": {"chip": "loihi", "hidden": [8], "timesteps": 4}} if config is None else config
    )
    (folder / "config.yaml").write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    for name, content in files.items():
        path = folder / name.replace("__", ".")
        if content == "DIR":
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content))
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """Every bad file of the catalogue, plus one existing run directory ``out/existing``."""
    lab = tmp_path_factory.mktemp("lab")
    text = GOOD_PROFILE.read_text()
    (lab / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (lab / "empty.yaml").write_text("")
    (lab / "list.yaml").write_text("- 1\n- 2\n")
    (lab / "malformed.yaml").write_text("id: x\nchip: [1, 2\n")
    (lab / "missing_field.yaml").write_text(text.replace("neurons_max", "neurons_mx", 1))
    raw = yaml.safe_load(text)
    cores = raw["chip"]["cores"]
    if isinstance(cores, dict):
        cores["value"] = -4
    else:
        raw["chip"]["cores"] = -4
    (lab / "negative_cores.yaml").write_text(yaml.safe_dump(raw))
    configs = {
        "c_epocs": "epocs: 3\n",
        "c_seed": "seed: abc\n",
        "c_resume": "resume: 'no'\n",
        "c_sparsity": "sparsity: x\n",
        "c_timeout": "sim_timeout: -5\n",
        "c_fixed": "fixed_point: maybe\n",
        "c_lrnan": "lr: .nan\n",
        "c_lrinf": "lr: .inf\n",
        "c_hidden": "hidden: [32, -1]\n",
        "c_method": "method: stdz\n",
        "c_name": "name: ../escape\n",
        "c_agree": "agreement_threshold: 2\n",
        "c_prune": "prune_epochs: -1\n",
        "c_batch": "batch_size: 0\n",
        "c_sched": "method: gmp\nscheduler: linear\n",
        "c_bool_int": "epochs: true\n",
    }
    for name, body in configs.items():
        (lab / f"{name}.yaml").write_text(body)
    (lab / "mnist_empty").mkdir()
    _mnist(lab / "mnist_truncated", truncate=True)
    _mnist(lab / "mnist_magic", magic=False)
    _mnist(lab / "mnist_count", n_labels=7)
    (lab / "cifar_empty").mkdir()
    for name, body in USER_MODELS.items():
        (lab / name).write_text(body)
    (lab / "file_out").write_text("a file, not a folder")
    (lab / "out").mkdir()
    (lab / "out" / "taken").write_text("a file where the run folder would go")
    existing = _run_dir(
        lab / "out" / "existing",
        report__json='{"chip": "loihi"}',
        dense__pt=b"not really a model",
        log__txt="old log\n",
    )
    (existing / "plots").mkdir()
    (existing / "plots" / "training.png").write_bytes(b"\x89PNG old")
    _run_dir(lab / "runs" / "no_config_dir", config="")
    (lab / "runs" / "no_config").mkdir(parents=True)
    _run_dir(lab / "runs" / "flat", config={"chip": "loihi", "dataset": "digits"})
    _run_dir(lab / "runs" / "garbage_config", config=bytes(range(256)).decode("latin-1"))
    _run_dir(lab / "runs" / "bad_value", config={"config": {"seed": "abc"}})
    _run_dir(lab / "runs" / "no_model")
    _run_dir(lab / "runs" / "quantized_dir", quantized__pt="DIR")
    _run_dir(lab / "runs" / "truncated", quantized__pt=b"PK\x03\x04 truncated zip")
    payload = lab / "payload.pt"
    torch.save({"format": "neuroprune-model", "version": 2, "model": _Payload()}, payload)
    _run_dir(lab / "runs" / "pickled", quantized__pt=payload.read_bytes())
    _run_dir(lab / "runs" / "wrong_format", quantized__pt=_tensor_file(lab))
    _run_dir(lab / "runs" / "no_report")
    _run_dir(lab / "runs" / "bad_report", report__json="{not json")
    _run_dir(lab / "runs" / "report_schema", report__json=json.dumps({"budget": {}}))
    _run_dir(lab / "runs" / "binary_report", report__json=bytes(range(256)))
    (lab / "empty.nir").write_bytes(b"")
    (lab / "garbage.nir").write_bytes(bytes(range(256)) * 8)
    _not_nir_hdf5(lab / "not_nir.nir")
    return lab


def _tensor_file(lab: Path) -> bytes:
    path = lab / "plain_tensor.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    return path.read_bytes()


def _not_nir_hdf5(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as handle:
        handle.create_dataset("numbers", data=np.arange(4))


FIT = ["fit", "--out", "{lab}/out", "--name", "existing", *TINY]


def fit_without(*options: str) -> list[str]:
    """FIT with the given options (and their values) left out, so a case can set them."""
    out, skip = [], False
    for arg in FIT:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        else:
            out.append(arg)
    return out


RUN = "{lab}/runs"

# (case id, argv, exit code, needles that must appear in the one line)
CASES = [
    # ---- chip profiles
    ("profile-unknown-id", ["check", "--chip", "lohi"], 2, ["lohi", "loihi"]),
    ("profile-missing-file", ["profiles", "validate", "{lab}/nope.yaml"], 2, ["nope.yaml"]),
    ("profile-binary", ["profiles", "validate", "{lab}/garbage.bin"], 2, ["garbage.bin"]),
    ("profile-malformed", ["profiles", "validate", "{lab}/malformed.yaml"], 2, ["malformed.yaml"]),
    (
        "profile-missing-field",
        ["profiles", "validate", "{lab}/missing_field.yaml"],
        2,
        ["missing_field.yaml", "neurons_max"],
    ),
    (
        "profile-negative-cores",
        ["check", "--chip", "{lab}/negative_cores.yaml"],
        2,
        ["chip.cores", "-4"],
    ),
    ("profile-list", ["profiles", "validate", "{lab}/list.yaml"], 2, ["list.yaml"]),
    ("profile-empty", ["profiles", "validate", "{lab}/empty.yaml"], 2, ["empty.yaml"]),
    ("fit-profile-missing", [*FIT, "--chip", "{lab}/nope.yaml"], 2, ["nope.yaml"]),
    ("fit-profile-binary", [*FIT, "--chip", "{lab}/garbage.bin"], 2, ["garbage.bin"]),
    ("profiles-show-unknown", ["profiles", "show", "truenorht"], 2, ["truenorht", "truenorth"]),
    # ---- config files
    ("config-unknown-key", [*FIT, "--config", "{lab}/c_epocs.yaml"], 2, ["epocs", "'epochs'"]),
    (
        "config-seed-text",
        [*FIT, "--config", "{lab}/c_seed.yaml"],
        2,
        ["c_seed.yaml", "seed", "abc"],
    ),
    ("config-resume-text", [*FIT, "--config", "{lab}/c_resume.yaml"], 2, ["resume", "'no'"]),
    ("config-sparsity-text", [*FIT, "--config", "{lab}/c_sparsity.yaml"], 2, ["sparsity", "'x'"]),
    (
        "config-timeout-negative",
        [*FIT, "--config", "{lab}/c_timeout.yaml"],
        2,
        ["sim_timeout", "-5"],
    ),
    ("config-fixed-maybe", [*FIT, "--config", "{lab}/c_fixed.yaml"], 2, ["fixed_point", "maybe"]),
    ("config-lr-nan", [*FIT, "--config", "{lab}/c_lrnan.yaml"], 2, ["lr", "nan"]),
    ("config-lr-inf", [*FIT, "--config", "{lab}/c_lrinf.yaml"], 2, ["lr", "inf"]),
    (
        "config-hidden-negative",
        [*fit_without("--hidden"), "--config", "{lab}/c_hidden.yaml"],
        2,
        ["hidden", "-1"],
    ),
    ("config-method-typo", [*FIT, "--config", "{lab}/c_method.yaml"], 2, ["stdz", "'stds'"]),
    (
        "config-name-escapes",
        ["fit", "--out", "{lab}/out", *TINY, "--config", "{lab}/c_name.yaml"],
        2,
        ["name", "../escape"],
    ),
    ("config-agreement", [*FIT, "--config", "{lab}/c_agree.yaml"], 2, ["agreement_threshold", "2"]),
    (
        "config-prune-epochs",
        [*fit_without("--prune-epochs"), "--config", "{lab}/c_prune.yaml"],
        2,
        ["prune_epochs", "-1"],
    ),
    ("config-batch-zero", [*FIT, "--config", "{lab}/c_batch.yaml"], 2, ["batch_size", "0"]),
    (
        "config-scheduler-pair",
        [
            "fit",
            "--out",
            "{lab}/out",
            "--name",
            "existing",
            "--hidden",
            "8",
            "--config",
            "{lab}/c_sched.yaml",
        ],
        2,
        ["scheduler", "gmp"],
    ),
    (
        "config-epochs-bool",
        [*fit_without("--epochs"), "--config", "{lab}/c_bool_int.yaml"],
        2,
        ["epochs", "True"],
    ),
    ("config-binary", [*FIT, "--config", "{lab}/garbage.bin"], 2, ["garbage.bin"]),
    ("config-list", [*FIT, "--config", "{lab}/list.yaml"], 2, ["list.yaml"]),
    ("config-malformed", [*FIT, "--config", "{lab}/malformed.yaml"], 2, ["malformed.yaml"]),
    ("config-missing", [*FIT, "--config", "{lab}/nope.yaml"], 2, ["nope.yaml"]),
    # ---- command-line options
    ("opt-lr-nan", [*FIT, "--lr", "nan"], 2, ["lr", "nan"]),
    ("opt-lr-inf", [*FIT, "--lr", "inf"], 2, ["lr", "inf"]),
    ("opt-lr-negative", [*FIT, "--lr", "-1"], 2, ["lr", "-1"]),
    ("opt-gmp-linear", [*FIT, "--method", "gmp", "--scheduler", "linear"], 2, ["scheduler", "gmp"]),
    ("opt-scheduler-typo", [*FIT, "--scheduler", "foo"], 2, ["scheduler", "foo"]),
    (
        "opt-hidden-huge",
        [*fit_without("--hidden"), "--hidden", "100000000"],
        2,
        ["hidden", "100000000"],
    ),
    (
        "opt-hidden-wide-net",
        [*fit_without("--hidden"), "--hidden", "60000,60000"],
        2,
        ["hidden", "60000,60000"],
    ),
    ("opt-hidden-text", [*fit_without("--hidden"), "--hidden", "a,b"], 2, ["hidden", "a,b"]),
    (
        "opt-name-escapes",
        ["fit", "--out", "{lab}/out", "--name", "../../x", *TINY],
        2,
        ["name", "../../x"],
    ),
    ("opt-name-dotdot", ["fit", "--out", "{lab}/out", "--name", "..", *TINY], 2, ["name", ".."]),
    ("opt-sparsity-range", [*FIT, "--sparsity", "1.5"], 2, ["sparsity", "1.5"]),
    ("opt-cores-negative", [*FIT, "--cores", "-2"], 2, ["cores", "-2"]),
    ("opt-chips-zero", [*FIT, "--chips", "0"], 2, ["chips", "0"]),
    ("opt-budget-infeasible", [*FIT, "--budget", "3"], 2, ["budget"]),
    ("opt-epochs-zero", [*fit_without("--epochs"), "--epochs", "0"], 2, ["epochs", "0"]),
    ("opt-epochs-text", [*fit_without("--epochs"), "--epochs", "abc"], 2, ["epochs", "abc"]),
    ("opt-timesteps-zero", [*FIT, "--timesteps", "0"], 2, ["timesteps", "0"]),
    ("opt-encoding", [*FIT, "--encoding", "foo"], 2, ["encoding", "foo"]),
    ("opt-neuron", [*FIT, "--neuron", "izh"], 2, ["neuron", "izh"]),
    (
        "opt-backend",
        [*fit_without("--backend"), "--backend", "lavaa"],
        2,
        ["backend", "lavaa", "'lava'"],
    ),
    ("opt-seed-negative", [*FIT, "--seed", "-1"], 2, ["seed", "-1"]),
    ("opt-samples-zero", [*FIT, "--samples", "0"], 2, ["samples", "0"]),
    ("opt-sim-timeout-zero", [*FIT, "--sim-timeout", "0"], 2, ["sim_timeout", "0"]),
    ("opt-nproc-zero", [*FIT, "--nproc", "0"], 2, ["nproc", "0"]),
    ("opt-dataset-typo", [*FIT, "--dataset", "mnits"], 2, ["mnits", "mnist"]),
    ("opt-unknown-option", [*FIT, "--epoch", "3"], 2, ["--epoch"]),
    (
        "simulate-samples-negative",
        ["simulate", "{lab}/garbage.nir", "--samples", "-1"],
        2,
        ["--samples", "-1"],
    ),
    (
        "simulate-threshold-range",
        ["simulate", "{lab}/garbage.nir", "--threshold", "2"],
        2,
        ["--threshold", "2"],
    ),
    (
        "simulate-timeout-negative",
        ["simulate", "{lab}/garbage.nir", "--timeout", "-1"],
        2,
        ["--timeout", "-1"],
    ),
    ("export-format", ["export", f"{RUN}/no_model", "--format", "xyz"], 2, ["--format", "xyz"]),
    # ---- data folders
    (
        "data-mnist-empty",
        [*FIT, "--dataset", "mnist", "--data-dir", "{lab}/mnist_empty"],
        2,
        ["train-images-idx3-ubyte"],
    ),
    (
        "data-mnist-missing-dir",
        [*FIT, "--dataset", "mnist", "--data-dir", "{lab}/nowhere"],
        2,
        ["nowhere"],
    ),
    (
        "data-mnist-truncated",
        [*FIT, "--dataset", "mnist", "--data-dir", "{lab}/mnist_truncated"],
        2,
        ["images-idx3-ubyte"],
    ),
    (
        "data-mnist-magic",
        [*FIT, "--dataset", "mnist", "--data-dir", "{lab}/mnist_magic"],
        2,
        ["images-idx3-ubyte"],
    ),
    (
        "data-mnist-count",
        [*FIT, "--dataset", "mnist", "--data-dir", "{lab}/mnist_count"],
        2,
        ["mnist_count"],
    ),
    (
        "data-cifar-empty",
        [*FIT, "--dataset", "cifar10", "--data-dir", "{lab}/cifar_empty"],
        2,
        ["cifar_empty"],
    ),
    # ---- user models
    ("model-sys-exit", [*FIT, "--model", "{lab}/exits.py:make"], 2, ["exits.py", "SystemExit"]),
    (
        "model-exit-on-import",
        [*FIT, "--model", "{lab}/exits_on_import.py:make"],
        2,
        ["exits_on_import.py", "SystemExit"],
    ),
    ("model-raises", [*FIT, "--model", "{lab}/raises.py:make"], 2, ["raises.py", "bad width"]),
    ("model-returns-none", [*FIT, "--model", "{lab}/none.py:make"], 2, ["none.py", "NoneType"]),
    ("model-syntax", [*FIT, "--model", "{lab}/syntax.py:make"], 2, ["syntax.py", "SyntaxError"]),
    ("model-relu", [*FIT, "--model", "{lab}/relu.py:make"], 2, ["relu.py", "ReLU"]),
    ("model-no-factory", [*FIT, "--model", "{lab}/other.py:make"], 2, ["other.py", "make"]),
    ("model-missing-file", [*FIT, "--model", "{lab}/gone.py:make"], 2, ["gone.py"]),
    ("model-unknown-name", [*FIT, "--model", "resnet"], 2, ["resnet"]),
    # ---- run directories
    ("run-missing", ["export", f"{RUN}/nowhere"], 2, ["nowhere"]),
    ("run-no-config", ["export", f"{RUN}/no_config"], 2, ["no_config", "config.yaml"]),
    ("run-empty-config", ["export", f"{RUN}/no_config_dir"], 2, ["config.yaml"]),
    ("run-flat-config", ["export", f"{RUN}/flat"], 2, ["config.yaml", "config:"]),
    ("run-binary-config", ["export", f"{RUN}/garbage_config"], 2, ["config.yaml"]),
    ("run-bad-config-value", ["export", f"{RUN}/bad_value"], 2, ["seed", "abc"]),
    ("run-no-model", ["export", f"{RUN}/no_model"], 2, ["no_model", "no model"]),
    ("run-quantized-is-dir", ["export", f"{RUN}/quantized_dir"], 2, ["quantized.pt"]),
    ("run-truncated-model", ["export", f"{RUN}/truncated"], 2, ["quantized.pt"]),
    ("run-pickle-payload", ["export", f"{RUN}/pickled"], 2, ["quantized.pt", "not executed"]),
    ("run-foreign-pt", ["export", f"{RUN}/wrong_format"], 2, ["quantized.pt"]),
    (
        "run-simulate-no-model",
        ["simulate", f"{RUN}/no_model", "--backend", "reference"],
        2,
        ["no_model"],
    ),
    ("run-quantize-no-pruned", ["quantize", f"{RUN}/no_model"], 2, ["pruned.pt"]),
    ("run-report-missing", ["report", f"{RUN}/no_report"], 2, ["no_report", "report.json"]),
    ("run-report-corrupt", ["report", f"{RUN}/bad_report"], 2, ["report.json"]),
    ("run-report-schema", ["report", f"{RUN}/report_schema"], 2, ["report.json", "chip"]),
    ("run-report-binary", ["report", f"{RUN}/binary_report"], 2, ["report.json"]),
    (
        "run-out-is-file",
        ["fit", "--out", "{lab}/file_out", "--name", "r", *TINY],
        EXIT_IO_ERROR,
        ["file_out", "ENOTDIR"],
    ),
    (
        "run-name-is-file",
        ["fit", "--out", "{lab}/out", "--name", "taken", *TINY],
        EXIT_IO_ERROR,
        ["taken", "ENOTDIR"],
    ),
    # ---- NIR files
    ("nir-missing", ["simulate", "{lab}/nope.nir", "--backend", "reference"], 2, ["nope.nir"]),
    (
        "nir-garbage",
        ["simulate", "{lab}/garbage.nir", "--backend", "reference"],
        2,
        ["garbage.nir"],
    ),
    ("nir-empty", ["simulate", "{lab}/empty.nir", "--backend", "reference"], 2, ["empty.nir"]),
    (
        "nir-not-nir-hdf5",
        ["simulate", "{lab}/not_nir.nir", "--backend", "reference"],
        2,
        ["not_nir.nir"],
    ),
]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_catalogue_is_large_and_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
    groups = {case.split("-")[0] for case in ids}
    assert {"profile", "config", "opt", "data", "model", "run", "nir"} <= groups


@pytest.mark.parametrize(
    ("argv", "code", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(lab, argv, code, needles):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    runs = snapshot(lab / "runs")
    existing = snapshot(lab / "out")
    args = [a.replace("{lab}", str(lab)) for a in argv]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    line = lines[0]
    for needle in needles:
        assert needle.replace("{lab}", str(lab)) in line, (needle, line)
    assert any(word in line for word in FIX_WORDS), f"no fix in: {line}"
    assert "payload ran" not in result.output
    assert snapshot(lab / "out") == existing, "an existing run directory was changed"
    assert snapshot(lab / "runs") == runs, "a run directory was changed"
