"""Config resolution: defaults <- YAML <- command line; unknown keys and bad values."""

from __future__ import annotations

import pytest

from neuroprune.core.errors import ConfigError
from neuroprune.pipeline.config import RunConfig, resolve_config


def test_file_then_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("chip: truenorth\nepochs: 3\nhidden: [32, 16]\n")
    cfg = resolve_config(f, {"epochs": 5, "seed": None})
    assert cfg.chip == "truenorth" and cfg.epochs == 5 and cfg.hidden == (32, 16)


def test_unknown_key_suggests_close_match(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("epocs: 3\n")
    with pytest.raises(ConfigError) as info:
        resolve_config(f, {})
    line = info.value.one_line()
    assert "epocs" in line and "'epochs'" in line and str(f) in line


@pytest.mark.parametrize(
    "key,value",
    [("sparsity", 1.5), ("epochs", 0), ("method", "stdz"), ("cores", -2), ("backend", "x")],
)
def test_bad_values_name_key_and_value(key, value):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{key: value})
    assert key in info.value.one_line() and repr(value) in info.value.one_line()


def test_hidden_string_parsed():
    assert resolve_config(None, {"hidden": "64,32"}).hidden == (64, 32)
    with pytest.raises(ConfigError):
        resolve_config(None, {"hidden": "a,b"})
