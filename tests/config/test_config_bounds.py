"""Configs an attacker or a careless user writes: YAML alias bombs, self-containing aliases, sizes
that would only fail on allocation. Each is refused at once with one line."""

import time

import pytest

from notpipe.config import MAX_CONFIG_VALUES, ConfigError, load_config, read_yaml, validate_config
from tests.snakemake_runner import REPO


def _bomb(levels: int = 9, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels values."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nsuite: bomb\ndatasets:\n  shoes:\n    pairs: *a{levels - 1}\n"


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_alias_bomb_refused_at_once_naming_the_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    assert len(path.read_bytes()) < 800  # 9**9 = 387,420,489 strings once expanded
    for load in (read_yaml, load_config):
        t0 = time.perf_counter()
        with pytest.raises(ConfigError) as err:
            load(path)
        assert time.perf_counter() - t0 < 1.0
        msg = _one_line(err)
        assert msg.startswith(f"{path}: ") and f"{MAX_CONFIG_VALUES:,} values" in msg and "alias" in msg


def test_loaded_bomb_refused_by_validate_config():
    """Snakemake loads --configfile itself: the bound holds on the loaded values too."""
    shared = ["lol"] * 9
    for _ in range(8):
        shared = [shared] * 9
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        validate_config({"datasets": {"shoes": {"pairs": shared}}}, source="configs/x.yaml")
    assert time.perf_counter() - t0 < 1.0
    assert _one_line(err).startswith("configs/x.yaml: the config expands to more than")


def test_alias_inside_its_own_anchor(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("datasets:\n  shoes: &s\n    pairs: [*s]\n")
    with pytest.raises(ConfigError, match="inside its own anchor") as err:
        read_yaml(path)
    assert _one_line(err).startswith(str(path))


def test_anchors_and_merge_keys_stay_allowed(tmp_path):
    cfg = load_config(REPO / "config.yaml")  # uses &anchors and <<: merge keys
    assert cfg["images"]["runs"]
    path = tmp_path / "merge.yaml"
    path.write_text(_bomb(levels=3, width=9))  # 729 values: a normal use of aliases
    assert len(read_yaml(path)["datasets"]["shoes"]["pairs"]) == 9


@pytest.mark.parametrize("cfg, key, estimate", [
    ({"data": {"image_size": 100000}}, "data.image_size: 100000 is above the maximum 1024", "27.9 GiB as uint8"),
    ({"toy": {"n_eval": 100000000, "experiments": {}}}, "toy.n_eval: 100000000 is above the maximum 16384",
     "float64 cost matrix: 71.1 PiB"),
    ({"datasets": {"big": {"url": "https://h/x.zip", "format": "image_folder_zip", "pre_resize": 50000}}},
     "datasets.big.pre_resize: 50000 is above the maximum 4096", "6.98 GiB as uint8"),
])
def test_size_maxima_with_memory_estimate(cfg, key, estimate):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    line = next(x for x in str(err.value).splitlines() if key in x)
    assert estimate in line and line.endswith("lower it")
