"""Datasets: digits split, IDX and CIFAR readers on tiny synthetic files, errors, encodings."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from neuroprune.core.errors import DatasetError
from neuroprune.data import datasets as data
from neuroprune.data.dataset import Dataset
from neuroprune.data.datasets import DATASETS, load_dataset, read_idx
from neuroprune.data.encoding import encode

# --------------------------------------------------------------------------------------------
# helpers: tiny synthetic files


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """IDX encoding: 0, 0, dtype code, ndim, big-endian uint32 sizes, data."""
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(">u1" if code == 0x08 else array.dtype).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    raw = idx_bytes(array)
    if gz:
        with gzip.open(f"{path}.gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def write_mnist(folder, n_train=12, n_test=6, size=5, gz=False, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gz=gz)
    return arrays


def write_cifar(folder, n=4, seed=0) -> list:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for name in data.CIFAR_FILES:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches.append(batch)
    return batches


# --------------------------------------------------------------------------------------------
# digits


def test_digits_fixed_stratified_split(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() == 1.0
    counts = np.bincount(digits.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    np.testing.assert_array_equal(again.y_train, digits.y_train)


def test_digits_equal_scikit_learn_without_importing_it():
    """The oracle is scikit-learn itself: ``load_digits`` + ``train_test_split`` (stratified,
    seed 0); the loader (run in a fresh interpreter) must give the same arrays and leave
    scikit-learn unimported."""
    import subprocess
    import sys

    probe = (
        "import sys; from neuroprune.data.datasets import load_dataset; "
        "load_dataset('digits'); print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    expected = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    ours = load_dataset("digits")
    for want, got in zip(
        expected, (ours.x_train, ours.x_test, ours.y_train, ours.y_test), strict=True
    ):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.33])
def test_stratified_split_equals_train_test_split(seed, fraction):
    from sklearn.model_selection import train_test_split

    y = np.random.default_rng(seed).integers(0, 7, 211)
    positions = np.arange(len(y))
    want_train, want_test = train_test_split(
        positions, test_size=fraction, random_state=seed, stratify=y
    )
    train, test = data.stratified_split(y, test_fraction=fraction, seed=seed)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)


def test_unreadable_digits_file_is_named(tmp_path):
    bad = tmp_path / "digits.csv.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(DatasetError) as caught:
        data._read_digits_csv(bad)
    assert str(bad) in str(caught.value)


IMAGES = ("digits", "digits-4x4", "mnist", "fashion-mnist", "cifar10")


def test_registry_and_aliases():
    assert DATASETS == IMAGES + ("nmnist", "dvsgesture", "shd", "spikecam-digits", "spikecam")
    assert data.canonical_name("N-MNIST") == "nmnist"
    assert data.canonical_name("Fashion_MNIST") == "fashion-mnist"
    assert data.canonical_name("CIFAR-10") == "cifar10"


def test_unknown_dataset_suggests_close_match():
    with pytest.raises(DatasetError) as err:
        load_dataset("mnsit")
    assert err.value.field == "name" and err.value.value == "mnsit"
    assert "'mnist'" in err.value.fix


def test_dataset_validates_arrays():
    x = np.zeros((3, 1, 2, 2), np.float32)
    with pytest.raises(DatasetError) as err:
        Dataset("t", x, np.zeros(3, np.int32), x, np.zeros(3, np.int64), 2)
    assert err.value.field == "y_train.dtype"
    with pytest.raises(DatasetError, match="labels must lie"):
        Dataset("t", x, np.full(3, 5, np.int64), x, np.zeros(3, np.int64), 2)


# --------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (12, 1, 5, 5) and ds.x_test.shape == (6, 1, 5, 5)
    expected = arrays["train-images-idx3-ubyte"][:, None].astype(np.float32) / 255.0
    np.testing.assert_allclose(ds.x_train, expected)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == np.int64


def test_fashion_mnist_in_torchvision_layout(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.class_names[0] == "T-shirt/top" and ds.x_train.shape[0] == 12


def test_read_idx_other_dtype(tmp_path):
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "f").write_bytes(idx_bytes(array, code=0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), array)


def test_missing_data_dir_names_every_file():
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist")
    assert err.value.field == "data_dir"
    assert all(name in err.value.fix for name in data.IDX_FILES)


def test_nonexistent_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path)
    assert str(tmp_path) in err.value.one_line()
    assert all(name in err.value.fix for name in data.IDX_FILES)


def test_one_missing_file_is_named(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path)
    assert err.value.value == "t10k-labels-idx1-ubyte"
    assert err.value.where == str(tmp_path)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda raw: b"\x01\x02" + raw[2:], "magic"),
        (lambda raw: raw[:-3], "size mismatch"),
        (lambda raw: raw[:3], "magic"),
    ],
)
def test_malformed_idx_names_file(tmp_path, corrupt, message):
    write_mnist(tmp_path)
    target = tmp_path / "train-images-idx3-ubyte"
    target.write_bytes(corrupt(target.read_bytes()))
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("mnist", tmp_path)
    assert err.value.where == str(target)


def test_bad_gzip_and_label_problems(tmp_path):
    write_mnist(tmp_path)
    os.rename(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path)
    assert err.value.where.endswith("t10k-images-idx3-ubyte.gz")

    write_mnist(tmp_path / "b")
    write_idx(tmp_path / "b" / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match="5 labels for 12 images"):
        load_dataset("mnist", tmp_path / "b")

    write_mnist(tmp_path / "c")
    write_idx(tmp_path / "c" / "train-labels-idx1-ubyte", np.full(12, 11, np.uint8))
    with pytest.raises(DatasetError, match="0..9"):
        load_dataset("mnist", tmp_path / "c")


# --------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    first = batches[0][b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255.0
    np.testing.assert_allclose(ds.x_train[0], first)
    np.testing.assert_array_equal(ds.y_test, batches[-1][b"labels"])
    assert ds.class_names[-1] == "truck"


def test_cifar_malformed_and_hostile_files(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", tmp_path)
    assert err.value.where == str(tmp_path / "data_batch_3")

    write_cifar(tmp_path)
    hostile = pickle.dumps({b"data": os.getcwd, b"labels": []})  # a global the reader refuses
    (tmp_path / "test_batch").write_bytes(hostile)
    with pytest.raises(DatasetError, match="refusing"):
        load_dataset("cifar10", tmp_path)

    write_cifar(tmp_path)
    bad_shape = {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(bad_shape))
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------------------------
# encodings (numpy)


def test_direct_and_poisson_encoding():
    x = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    direct = encode(x, 3, "direct")
    assert direct.shape == (3, 5, 1, 4, 4) and np.all(direct == x)
    spikes = encode(x, 400, "poisson", seed=7)
    assert spikes.dtype == np.float32 and set(np.unique(spikes)) <= {0.0, 1.0}
    np.testing.assert_array_equal(spikes, encode(x, 400, "poisson", seed=7))
    assert not np.array_equal(spikes, encode(x, 400, "poisson", seed=8))
    np.testing.assert_allclose(spikes.mean(0), x, atol=0.1)
    with pytest.raises(DatasetError):
        encode(x, 2, "rate")


def test_digits_4x4_is_digits_pooled_to_16_channels_with_8_classes(digits):
    """Xylo's reduction: each 8x8 digit averaged over 2x2 blocks, classes 0-7 only, same split."""
    pooled = load_dataset("digits-4x4")
    keep = digits.y_test < 8
    assert pooled.x_test.shape == (int(keep.sum()), 1, 4, 4) and pooled.num_classes == 8
    assert np.array_equal(pooled.y_test, digits.y_test[keep])
    image = digits.x_test[keep][0, 0]
    block = image[2:4, 4:6].sum() / 4  # row block 1, column block 2
    assert pooled.x_test[0, 0, 1, 2] == pytest.approx(block)
