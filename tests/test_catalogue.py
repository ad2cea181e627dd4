"""The bad-input catalogue: every case is answered with its exit code and ONE line naming the
file or field, the value and a fix, with no traceback, and the bytes of an existing run
directory stay unchanged. Cases span chip profiles, config files, command-line options, data
folders, run directories, user models and NIR files (none of these trains or starts Lava), and,
on a finished tiny run, file-system faults wherever they strike (exit 4 naming the file) and
signals at any point (exit 130)."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.core.errors import EXIT_INTERRUPTED, EXIT_IO_ERROR
from neuroprune.run.rundir import PARTIAL_MARK

ROOT = Path(__file__).resolve().parents[1]

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


def _mnist(
    folder: Path,
    n_labels: int = 10,
    truncate: bool = False,
    magic: bool = True,
    n_images: int = 10,
    gzip_names: bool = False,
    label_value: int = 0,
    flat_images: bool = False,
) -> None:
    """An MNIST folder of IDX files, broken as asked (``gzip_names``: plain bytes in files
    named ``.gz``)."""
    folder.mkdir()
    images = np.zeros((n_images, 16) if flat_images else (n_images, 4, 4), np.uint8)
    labels = np.full(n_labels if n_images else 0, label_value, np.uint8)
    suffix = ".gz" if gzip_names else ""
    for prefix in ("train", "t10k"):
        raw = _idx(images)
        raw = raw[:-7] if truncate else raw
        raw = raw if magic else b"\x12\x34" + raw[2:]
        (folder / f"{prefix}-images-idx3-ubyte{suffix}").write_bytes(raw)
        (folder / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(_idx(labels))


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
    _more_bad_files(lab)
    return lab


def _more_bad_files(lab: Path) -> None:
    """The cases added for issue 25: duplicate keys, option pairs, empty and corrupt data
    files, NIR files with non-finite numbers, more user models and run directories."""
    text = GOOD_PROFILE.read_text()
    (lab / "dup_profile.yaml").write_text(text + "\nchip:\n  cores: 1\n")
    (lab / "profile_dir.yaml").mkdir()
    (lab / "utf16.yaml").write_bytes("epochs: 1\n".encode("utf-16"))
    configs = {
        "c_dup": "epochs: 1\nseed: 3\nepochs: 30\n",
        "c_dup_case": "lr: 0.01\nlr: 0.001\n",
        "c_train_dense": "train_dense: true\n",
        "c_from_model": f"from_nir: {lab / 'ok.nir'}\nmodel: conv\n",
        "c_neuron": "neuron: lifx\n",
        "c_chips": "chips: 0\n",
        "c_encoding": "encoding: events\n",
        "c_optimizer": "optimizer: adamw\n",
        "c_window": "event_window: 5:1\n",
        "c_maxdrop": "max_accuracy_drop: 500\n",
        "c_hidden_zero": "hidden: [0]\n",
        "c_quant": "quant_epochs: -2\n",
        "c_device": "device: tpu\n",
        "c_samples": "samples: 0.5\n",
        "c_nested": "epochs: {value: 3}\n",
        "c_cores_text": "cores: many\n",
    }
    for name, body in configs.items():
        (lab / f"{name}.yaml").write_text(body)
    _mnist(lab / "mnist_zero", n_images=0)
    _mnist(lab / "mnist_gz", gzip_names=True)
    _mnist(lab / "mnist_labels", label_value=12)
    _mnist(lab / "mnist_ndim", flat_images=True)
    _nmnist(lab / "nmnist_empty", recording=b"")
    _nmnist(lab / "nmnist_length", recording=b"\x01\x02\x03")
    _nmnist(lab / "nmnist_address", recording=bytes([200, 1, 0, 0, 1]))
    (lab / "nmnist_bare").mkdir()
    _cifar(lab / "cifar_zero", rows=0)
    _cifar(lab / "cifar_garbage", garbage=True)
    (lab / "data_file").write_text("a file, not a folder")
    _nir(lab / "ok.nir")
    _nir(lab / "nan_weight.nir", weight=float("nan"))
    _nir(lab / "inf_weight.nir", weight=float("-inf"))
    _nir(lab / "inf_threshold.nir", threshold=float("inf"))
    _nir(lab / "nan_tau.nir", tau=float("nan"))
    _nir(lab / "nan_bias.nir", bias=float("nan"))
    for name, body in MORE_USER_MODELS.items():
        (lab / name).write_text(body)
    (lab / "model_dir.py").mkdir()
    _run_dir(lab / "runs" / "config_is_dir", config="")
    (lab / "runs" / "config_is_dir" / "config.yaml").unlink()
    (lab / "runs" / "config_is_dir" / "config.yaml").mkdir()
    _run_dir(lab / "runs" / "config_list", config="- 1\n- 2\n")
    _run_dir(lab / "runs" / "empty_model", quantized__pt=b"")
    _run_dir(lab / "runs" / "unknown_key", config={"config": {"epocs": 3}})
    (lab / "runs" / "a_file").write_text("a file, not a run directory")


MORE_USER_MODELS = {
    "no_args.py": "def make():\n    return None\n",
    "returns_int.py": "def make(input_shape, num_classes):\n    return 3\n",
    "imports_missing.py": "import a_module_nobody_has\ndef make(i, n):\n    return None\n",
    "empty_net.py": (
        "import torch\ndef make(input_shape, num_classes):\n    return torch.nn.Sequential()\n"
    ),
    "not_callable.py": "make = 3\n",
}


def _nir(path: Path, weight=0.1, threshold=1.0, tau=0.01, bias=0.0) -> None:
    """A 64-16-10 LIF network as NIR (dt 1 ms), one number of it replaced."""
    import nir

    w1 = np.full((16, 64), 0.1, np.float32)
    w1[0, 0] = weight
    b1 = np.zeros(16, np.float32)
    b1[3] = bias

    def lif(n: int):
        return nir.LIF(
            tau=np.full(n, tau),
            r=np.ones(n),
            v_leak=np.zeros(n),
            v_threshold=np.full(n, threshold),
            v_reset=np.zeros(n),
        )

    nodes = {
        "input": nir.Input(input_type={"input": np.array([64])}),
        "fc": nir.Affine(weight=w1, bias=b1),
        "lif": lif(16),
        "fc2": nir.Affine(weight=np.full((10, 16), 0.1, np.float32), bias=np.zeros(10, np.float32)),
        "lif2": lif(10),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}))


def _nmnist(folder: Path, recording: bytes) -> None:
    """N-MNIST's folder layout with one recording per split, ``recording`` the train one."""
    good = bytes([1, 1, 0x80, 0, 10]) * 4
    for split, body in (("Train", recording), ("Test", good)):
        (folder / split / "0").mkdir(parents=True)
        (folder / split / "0" / "00001.bin").write_bytes(body)


def _cifar(folder: Path, rows: int = 2, garbage: bool = False) -> None:
    import pickle

    folder.mkdir()
    batch = {b"data": np.zeros((rows, 3072), np.uint8), b"labels": [0] * rows}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        body = b"not a pickle" if garbage else pickle.dumps(batch)
        (folder / name).write_bytes(body)


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


MNIST = [*FIT, "--dataset", "mnist", "--data-dir"]
NMNIST = [*FIT, "--dataset", "nmnist", "--data-dir"]
FROM = [*fit_without("--hidden"), "--from"]

CASES += [
    # ---- issue 25: config files
    ("config-duplicate-key", [*FIT, "--config", "{lab}/c_dup.yaml"], 2, ["c_dup.yaml", "epochs"]),
    ("config-duplicate-lr", [*FIT, "--config", "{lab}/c_dup_case.yaml"], 2, ["'lr'", "twice"]),
    (
        "config-train-dense-alone",
        [*FIT, "--config", "{lab}/c_train_dense.yaml"],
        2,
        ["--train-dense", "--from"],
    ),
    (
        "config-from-with-model",
        [*fit_without("--hidden"), "--config", "{lab}/c_from_model.yaml"],
        2,
        ["--model conv", "ok.nir"],
    ),
    ("config-neuron-typo", [*FIT, "--config", "{lab}/c_neuron.yaml"], 2, ["neuron", "lifx"]),
    ("config-chips-zero", [*FIT, "--config", "{lab}/c_chips.yaml"], 2, ["chips", "0"]),
    ("config-encoding-events", [*FIT, "--config", "{lab}/c_encoding.yaml"], 2, ["encoding"]),
    ("config-optimizer", [*FIT, "--config", "{lab}/c_optimizer.yaml"], 2, ["optimizer", "adamw"]),
    ("config-event-window", [*FIT, "--config", "{lab}/c_window.yaml"], 2, ["event_window"]),
    (
        "config-max-drop-range",
        [*FIT, "--config", "{lab}/c_maxdrop.yaml"],
        2,
        ["max_accuracy_drop", "500"],
    ),
    (
        "config-hidden-zero",
        [*fit_without("--hidden"), "--config", "{lab}/c_hidden_zero.yaml"],
        2,
        ["hidden", "0"],
    ),
    (
        "config-quant-negative",
        [*fit_without("--quant-epochs"), "--config", "{lab}/c_quant.yaml"],
        2,
        ["quant_epochs", "-2"],
    ),
    ("config-device", [*FIT, "--config", "{lab}/c_device.yaml"], 2, ["device", "tpu"]),
    ("config-samples-float", [*FIT, "--config", "{lab}/c_samples.yaml"], 2, ["samples", "0.5"]),
    (
        "config-nested-value",
        [*fit_without("--epochs"), "--config", "{lab}/c_nested.yaml"],
        2,
        ["epochs"],
    ),
    ("config-cores-text", [*FIT, "--config", "{lab}/c_cores_text.yaml"], 2, ["cores", "many"]),
    ("config-utf16", [*FIT, "--config", "{lab}/utf16.yaml"], 2, ["utf16.yaml", "UTF-8"]),
    ("config-directory", [*FIT, "--config", "{lab}/profile_dir.yaml"], 2, ["profile_dir.yaml"]),
    # ---- issue 25: chip profiles
    (
        "profile-duplicate-key",
        ["profiles", "validate", "{lab}/dup_profile.yaml"],
        2,
        ["dup_profile.yaml", "'chip'", "twice"],
    ),
    (
        "fit-profile-duplicate-key",
        [*FIT, "--chip", "{lab}/dup_profile.yaml"],
        2,
        ["dup_profile.yaml", "twice"],
    ),
    (
        "check-profile-duplicate-key",
        ["check", "--chip", "{lab}/dup_profile.yaml"],
        2,
        ["dup_profile.yaml", "twice"],
    ),
    ("profile-directory", ["check", "--chip", "{lab}/profile_dir.yaml"], 2, ["profile_dir.yaml"]),
    ("profile-utf16", ["profiles", "validate", "{lab}/utf16.yaml"], 2, ["utf16.yaml"]),
    ("profiles-show-empty", ["profiles", "show", ""], 2, []),
    # ---- issue 25: option pairs and allocations
    ("opt-train-dense-alone", [*FIT, "--train-dense"], 2, ["--train-dense", "--from"]),
    ("opt-from-with-model", [*FROM, "{lab}/ok.nir", "--model", "conv"], 2, ["--model conv"]),
    ("opt-from-with-hidden", [*FROM, "{lab}/ok.nir", "--hidden", "8"], 2, ["--hidden 8"]),
    ("opt-from-with-neuron", [*FROM, "{lab}/ok.nir", "--neuron", "if"], 2, ["--neuron if"]),
    (
        "opt-chips-above-system",
        [*FIT, "--chip", "spinnaker", "--chips", "100000"],
        2,
        ["chips", "100000", "57600"],
    ),
    (
        "opt-cores-above-system",
        [*FIT, "--chip", "spinnaker", "--cores", "10000000"],
        2,
        ["cores", "10000000"],
    ),
    ("check-cores-zero", ["check", "--chip", "loihi", "--cores", "0"], 2, ["cores", "0"]),
    ("check-chips-zero", ["check", "--chip", "loihi", "--chips", "0"], 2, ["chips", "0"]),
    (
        "check-chips-above-system",
        ["check", "--chip", "spinnaker", "--chips", "100000"],
        2,
        ["chips", "57600"],
    ),
    (
        "check-from-with-model",
        ["check", "--chip", "loihi", "--from", "{lab}/ok.nir", "--model", "conv"],
        2,
        ["--model conv"],
    ),
    (
        "opt-speck-lif",
        [*FIT, "--chip", "speck"],
        2,
        ["speck", "LIF", "--neuron if"],
    ),
    ("opt-max-drop-range", [*FIT, "--max-accuracy-drop", "500"], 2, ["max_accuracy_drop"]),
    ("opt-nir-dt-negative", [*FIT, "--nir-dt", "-1"], 2, ["nir_dt", "-1"]),
    ("opt-batch-size-zero", [*FIT, "--batch-size", "0"], 2, ["batch_size", "0"]),
    ("opt-event-downsample", [*FIT, "--event-downsample", "0"], 2, ["event_downsample", "0"]),
    ("opt-optimizer", [*FIT, "--optimizer", "adamw"], 2, ["adamw"]),
    ("opt-resume-value", [*FIT, "--resume", "yes"], 2, ["yes"]),
    ("opt-budget-zero", [*FIT, "--budget", "0"], 2, ["budget", "0"]),
    ("opt-sparsity-one", [*FIT, "--sparsity", "1"], 2, ["sparsity", "1"]),
    ("opt-device-cuda", [*FIT, "--device", "cuda"], 2, ["device", "cuda"]),
    # ---- issue 25: data files
    ("data-mnist-zero-images", [*MNIST, "{lab}/mnist_zero"], 2, ["images-idx3-ubyte", "0 images"]),
    ("data-mnist-gz-not-gzip", [*MNIST, "{lab}/mnist_gz"], 2, ["idx3-ubyte.gz", "gzip"]),
    ("data-mnist-label-range", [*MNIST, "{lab}/mnist_labels"], 2, ["labels-idx1-ubyte", "12"]),
    ("data-mnist-flat-images", [*MNIST, "{lab}/mnist_ndim"], 2, ["images-idx3-ubyte"]),
    ("data-dir-is-file", [*MNIST, "{lab}/data_file"], 2, ["data_file"]),
    ("data-nmnist-empty-recording", [*NMNIST, "{lab}/nmnist_empty"], 2, ["00001.bin", "0 bytes"]),
    ("data-nmnist-length", [*NMNIST, "{lab}/nmnist_length"], 2, ["00001.bin", "5 bytes"]),
    ("data-nmnist-address", [*NMNIST, "{lab}/nmnist_address"], 2, ["00001.bin", "34x34"]),
    ("data-nmnist-no-splits", [*NMNIST, "{lab}/nmnist_bare"], 2, ["nmnist_bare"]),
    (
        "data-cifar-zero-images",
        [*FIT, "--dataset", "cifar10", "--data-dir", "{lab}/cifar_zero"],
        2,
        ["data_batch_1", "0 images"],
    ),
    (
        "data-cifar-garbage",
        [*FIT, "--dataset", "cifar10", "--data-dir", "{lab}/cifar_garbage"],
        2,
        ["data_batch_1", "CIFAR"],
    ),
    # ---- issue 25: NIR files with numbers no chip can hold
    (
        "nir-nan-weight",
        ["simulate", "{lab}/nan_weight.nir", "--backend", "reference"],
        2,
        ["nan_weight.nir", "fc.weight", "nan"],
    ),
    (
        "nir-inf-threshold",
        ["simulate", "{lab}/inf_threshold.nir", "--backend", "reference"],
        2,
        ["inf_threshold.nir", "v_threshold", "inf"],
    ),
    ("fit-from-nan-weight", [*FROM, "{lab}/nan_weight.nir"], 2, ["nan_weight.nir", "fc.weight"]),
    ("fit-from-inf-weight", [*FROM, "{lab}/inf_weight.nir"], 2, ["inf_weight.nir", "-inf"]),
    (
        "fit-from-inf-threshold",
        [*FROM, "{lab}/inf_threshold.nir"],
        2,
        ["inf_threshold.nir", "v_threshold"],
    ),
    ("fit-from-nan-tau", [*FROM, "{lab}/nan_tau.nir"], 2, ["nan_tau.nir", "tau"]),
    ("fit-from-nan-bias", [*FROM, "{lab}/nan_bias.nir"], 2, ["nan_bias.nir", "fc.bias"]),
    (
        "check-from-nan-weight",
        ["check", "--chip", "loihi", "--from", "{lab}/nan_weight.nir"],
        2,
        ["nan_weight.nir"],
    ),
    ("fit-from-missing", [*FROM, "{lab}/gone.nir"], 2, ["gone.nir"]),
    ("fit-from-garbage", [*FROM, "{lab}/garbage.nir"], 2, ["garbage.nir"]),
    ("fit-from-not-nir", [*FROM, "{lab}/not_nir.nir"], 2, ["not_nir.nir"]),
    # ---- issue 25: user models
    ("model-no-arguments", [*FIT, "--model", "{lab}/no_args.py:make"], 2, ["no_args.py"]),
    ("model-returns-int", [*FIT, "--model", "{lab}/returns_int.py:make"], 2, ["returns_int.py"]),
    (
        "model-import-error",
        [*FIT, "--model", "{lab}/imports_missing.py:make"],
        2,
        ["imports_missing.py", "a_module_nobody_has"],
    ),
    ("model-empty-net", [*FIT, "--model", "{lab}/empty_net.py:make"], 2, ["empty_net.py"]),
    ("model-not-callable", [*FIT, "--model", "{lab}/not_callable.py:make"], 2, ["not_callable"]),
    ("model-path-is-dir", [*FIT, "--model", "{lab}/model_dir.py:make"], 2, ["model_dir.py"]),
    # ---- issue 25: run directories
    ("run-config-is-dir", ["export", f"{RUN}/config_is_dir"], 2, ["config.yaml"]),
    ("run-config-list", ["export", f"{RUN}/config_list"], 2, ["config.yaml"]),
    ("run-empty-model", ["export", f"{RUN}/empty_model"], 2, ["quantized.pt"]),
    ("run-unknown-key", ["export", f"{RUN}/unknown_key"], 2, ["epocs"]),
    ("run-is-file", ["export", f"{RUN}/a_file"], 2, ["a_file"]),
    ("run-simulate-is-file", ["simulate", f"{RUN}/a_file", "--backend", "reference"], 2, []),
    ("run-report-is-file", ["report", f"{RUN}/a_file"], 2, ["a_file"]),
    ("run-quantize-missing", ["quantize", f"{RUN}/nowhere"], 2, ["nowhere"]),
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


# --------------------------------------------------------------------------------------------
# A finished run (trained: tiny), and the faults that need one: a chip that cannot run its
# neurons, file-system faults wherever they strike, signals at any point.

REAL = ["--hidden", "8", "--epochs", "1", "--prune-epochs", "1", "--finetune-epochs", "0"]
REAL += ["--quant-epochs", "0", "--backend", "none", "--sparsity", "0.5", "--seed", "0"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """``fit --chip loihi`` (LIF neurons, pruning to half the synapses): every artifact."""
    out = tmp_path_factory.mktemp("real")
    result = CliRunner().invoke(main, ["fit", "--out", str(out), "--name", "run", *REAL])
    assert result.exit_code == 0, result.stderr
    return out / "run"


RUN_CASES = [
    ("run-quantize-speck-lif", ["quantize", "{run}", "--chip", "speck"], 2, ["speck", "LIF"]),
    ("run-quantize-chip-typo", ["quantize", "{run}", "--chip", "lohi"], 2, ["lohi", "loihi"]),
    ("run-simulate-threshold", ["simulate", "{run}", "--threshold", "5"], 2, ["--threshold"]),
    ("run-export-format", ["export", "{run}", "--format", "xyz"], 2, ["xyz"]),
    ("run-quantize-epochs-text", ["quantize", "{run}", "--quant-epochs", "x"], 2, ["x"]),
]


@pytest.mark.parametrize(
    ("argv", "code", "needles"),
    [c[1:] for c in RUN_CASES],
    ids=[c[0] for c in RUN_CASES],
)
def test_bad_input_on_a_finished_run(real_run, tmp_path, argv, code, needles):
    """Refused before anything is written: the run and every folder beside it unchanged."""
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, [a.replace("{run}", str(run)) for a in argv])
    line = one_error_line(result, code)
    for needle in needles:
        assert needle in line, (needle, line)
    assert snapshot(tmp_path) == before


def one_error_line(result, code: int) -> str:
    """The command's one ``error:`` line (asserting exit ``code``, no traceback, a fix)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert any(word in lines[0] for word in FIX_WORDS), f"no fix in: {lines[0]}"
    return lines[0]


# (case id, the file the fault strikes, errno): the OS answers the write or the rename of
# that file (atomic writes: temporary file, then rename) with the error, as a full disk, a
# file-size limit, a quota, a read-only remount or a permission change would.
FS_CASES = [
    ("fs-enospc-dense-checkpoint", "dense.ckpt", errno.ENOSPC),
    ("fs-enospc-dense-pt", "dense.pt", errno.ENOSPC),
    ("fs-efbig-pruned-pt", "pruned.pt", errno.EFBIG),
    ("fs-edquot-quantized-pt", "quantized.pt", errno.EDQUOT),
    ("fs-erofs-fit-json", "fit.json", errno.EROFS),
    ("fs-enospc-model-nir", "model.nir", errno.ENOSPC),
    ("fs-efbig-model-onnx", "model.onnx", errno.EFBIG),
    ("fs-eacces-report-json", "report.json", errno.EACCES),
    ("fs-enospc-report-md", "report.md", errno.ENOSPC),
    ("fs-erofs-plot", "training.png", errno.EROFS),
    ("fs-eacces-config", "config.yaml", errno.EACCES),
    ("fs-enospc-log", "log.txt", errno.ENOSPC),
    ("fs-efbig-profile", "profile.yaml", errno.EFBIG),
]


@pytest.mark.parametrize(("name", "err"), [c[1:] for c in FS_CASES], ids=[c[0] for c in FS_CASES])
def test_a_file_system_fault_anywhere_is_exit_4_naming_the_file(
    real_run, tmp_path, monkeypatch, name, err
):
    """A second fit into a finished run's folder meets the fault at one file: exit 4, one line
    naming that file and the errno, the first run byte-identical."""
    from neuroprune.core import atomic

    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    before = snapshot(run)
    real_replace = os.replace
    struck = []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            struck.append(str(dst))
            raise OSError(err, os.strerror(err))  # as write(2) gives it: no file name
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)
    result = CliRunner().invoke(main, ["fit", "--out", str(tmp_path), "--name", "run", *REAL])
    monkeypatch.undo()
    line = one_error_line(result, EXIT_IO_ERROR)
    assert struck and name in line and errno.errorcode[err] in line, line
    assert snapshot(run) == before


def test_a_real_file_size_limit_on_a_checkpoint_is_exit_4(real_run, tmp_path):
    """``ulimit -f`` below the first checkpoint's size (torch.save's own "unexpected pos"
    error before): exit 4 naming the file, EFBIG, the first run byte-identical."""
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    before = snapshot(run)
    limit = 2048  # below every model file, above config.yaml
    proc = subprocess.run(
        [sys.executable, "-m", "neuroprune", "fit", "--out", str(tmp_path), "--name", "run"]
        + ["--hidden", "32", *REAL[2:]],
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == EXIT_IO_ERROR and len(lines) == 1, proc.stderr
    assert "EFBIG" in lines[0] and str(tmp_path) in lines[0], lines[0]
    assert snapshot(run) == before


# (case id, signal, seconds after the fit marked its staging folder; None: while the command
# line is still being imported)
SIGNAL_CASES = [
    ("signal-sigint-while-importing", signal.SIGINT, None),
    ("signal-sigterm-while-importing", signal.SIGTERM, None),
    ("signal-sigint-at-staging", signal.SIGINT, 0.0),
    ("signal-sigterm-at-staging", signal.SIGTERM, 0.0),
    ("signal-sigint-while-training", signal.SIGINT, 1.0),
    ("signal-sigterm-while-training", signal.SIGTERM, 1.0),
]


@pytest.mark.parametrize(
    ("sig", "delay"), [c[1:] for c in SIGNAL_CASES], ids=[c[0] for c in SIGNAL_CASES]
)
def test_a_signal_at_any_point_is_exit_130_and_one_line(real_run, tmp_path, sig, delay):
    """SIGINT or SIGTERM to a second fit (5 dense epochs: seconds), while Python imports the
    command line or after it marked its staging folder: exit 130 (never the -2 of a death by
    SIGINT), the one ``interrupted`` line, the first run byte-identical."""
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    before = snapshot(run)
    argv = ["fit", "--out", str(tmp_path), "--name", "run", "--hidden", "32", "--epochs", "5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuroprune", *argv, *REAL[2:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    if delay is None:  # past Python's own start-up, within the command line's imports
        wait_for_library(proc, "_pydantic_core")
    else:
        mark = tmp_path / ".run.staging" / PARTIAL_MARK
        deadline = time.monotonic() + 300
        while not (mark.is_file() and mark.read_text().strip() == str(proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.005)
        time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == EXIT_INTERRUPTED, (proc.returncode, err)
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    assert snapshot(run) == before


def wait_for_library(proc: subprocess.Popen, name: str, timeout: float = 300) -> None:
    """Until ``proc`` has loaded the shared library ``name`` (its /proc maps name it): the
    command line's imports are under way (pydantic's core is among the first), Python's own
    start-up, out of any program's reach, is over."""
    maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.monotonic() + timeout
    while name not in maps.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.002)


def test_the_catalogue_spans_every_kind_of_fault():
    """At least 150 cases over bad options, configs, profiles, data, NIR, models, run
    directories, file-system faults and signals, every id once."""
    ids = [c[0] for c in CASES + RUN_CASES + FS_CASES + SIGNAL_CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 150, len(ids)
    kinds = {i.split("-")[0] for i in ids}
    assert {"opt", "config", "profile", "data", "nir", "model", "run", "fs", "signal"} <= kinds


def test_a_chip_exact_simulation_below_the_threshold_fails(real_run, tmp_path):
    """The pass/fail rule of ``simulate`` can fail: a Loihi run (fixed point, chip-exact on the
    reference backend) whose model.nir is another run's disagrees with its own quantized
    model, and ``simulate RUN --backend reference`` exits 1 (it exited 0 at any agreement)."""
    other = CliRunner().invoke(
        main, ["fit", "--out", str(tmp_path), "--name", "other", *REAL[:-1], "1"]
    )
    assert other.exit_code == 0, other.stderr
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    shutil.copyfile(tmp_path / "other" / "model.nir", run / "model.nir")
    argv = ["simulate", str(run), "--backend", "reference", "--json"]
    result = CliRunner().invoke(main, argv)
    record = json.loads(result.stdout)
    assert record["verification"]["kind"] == "chip-exact"
    assert record["agreement_source"] == "reference_model" and record["mode"] == "fixed"
    assert record["spike_agreement"] < 0.99 and result.exit_code == 1, result.stderr
    own = shutil.copytree(real_run, tmp_path / "own")
    same = CliRunner().invoke(main, ["simulate", str(own), "--backend", "reference"])
    assert same.exit_code == 0, same.output  # its own model.nir agrees: the rule passes


def test_an_interrupt_a_destructor_swallowed_still_stops_the_command():
    """A signal that lands while Python runs a weakref callback (or a destructor) has its
    KeyboardInterrupt printed as "Exception ignored" and dropped, and the command ran on
    (a SIGTERM mid-training once exited 0): the signal is recorded and raised again at the
    next progress event, exit 130 and the one line."""
    import weakref

    import click

    from neuroprune.cli.app import checked, handle_errors

    reached = []

    @click.command()
    @handle_errors
    def command():
        class Node:
            pass

        node = Node()
        ref = weakref.ref(node, lambda _: os.kill(os.getpid(), signal.SIGTERM))
        del node  # the callback runs, its KeyboardInterrupt is swallowed
        assert ref() is None
        reached.append("after the callback")
        checked(lambda event: reached.append(event))({"event": "epoch"})
        reached.append("after the next event")

    result = CliRunner().invoke(command, [])
    assert reached == ["after the callback"]
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), result.stderr
