import copy

import pytest
import yaml

from notpipe.config import (
    ConfigError,
    load_config,
    toy_experiments,
    toy_sweeps,
    validate_config,
)

BASE = {"toy": {"experiments": {"moons": {
    "source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"}, "cost": {"name": "strong"}}}}}


def cfg_with(**exp_over):
    cfg = copy.deepcopy(BASE)
    cfg["toy"]["experiments"]["moons"].update(exp_over)
    return cfg


def test_defaults_filled_from_schema():
    cfg = validate_config(BASE)
    exp = cfg["toy"]["experiments"]["moons"]
    assert cfg["results_dir"] == "results" and cfg["toy"]["n_eval"] == 4096
    assert exp["steps"] == 10000 and exp["batch"] == 64 and exp["k_t"] == 10
    assert exp["model"]["hidden_t"] == [100, 100] and exp["optim"]["lr_t"] == 1e-4
    assert exp["cost"]["scaling"] == "sum"
    assert "results_dir" not in BASE  # input not mutated


def test_unknown_key_named_with_allowed_keys_and_hint():
    with pytest.raises(ConfigError) as err:
        validate_config(cfg_with(stpes=10))
    msg = str(err.value)
    assert "toy.experiments.moons: unknown key 'stpes'" in msg
    assert "did you mean 'steps'" in msg and "allowed keys:" in msg and "k_t" in msg


def test_unknown_top_level_key():
    cfg = copy.deepcopy(BASE)
    cfg["tyo"] = {}
    with pytest.raises(ConfigError, match="<top level>: unknown key 'tyo'"):
        validate_config(cfg)


def test_unknown_sampler_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        validate_config(cfg_with(target={"name": "moon"}))
    msg = str(err.value)
    assert "toy.experiments.moons.target.name: 'moon' is not allowed" in msg
    assert "8gaussians" in msg and "swissroll" in msg


def test_wrong_type_named():
    with pytest.raises(ConfigError, match=r"toy.experiments.moons.steps: 'ten' is not of type 'integer'"):
        validate_config(cfg_with(steps="ten"))


def test_weak_gamma_above_one_rejected_negative_allowed():
    with pytest.raises(ConfigError, match="gamma=1.5 > 1 makes the weak quadratic cost ill-posed"):
        validate_config(cfg_with(cost={"name": "weak", "gamma": 1.5, "z_size": 4}))
    validate_config(cfg_with(cost={"name": "weak", "gamma": -0.5, "z_size": 4}))
    with pytest.raises(ConfigError, match="gamma=2.0 > 1"):
        validate_config(cfg_with(cost={"name": "weak", "z_size": 4}, gamma_sweep=[0.0, 2.0]))


def test_dim_mismatch_rejected():
    with pytest.raises(ConfigError, match="source dim 3 != target dim 2"):
        validate_config(cfg_with(source={"name": "gaussian", "dim": 3}))
    with pytest.raises(ConfigError, match="mean: length 2 does not match dim=3"):
        validate_config(cfg_with(source={"name": "gaussian", "dim": 3, "mean": [0, 0]}))


def test_planar_sampler_dim_and_strong_gamma_and_checkpoint_multiple():
    with pytest.raises(ConfigError, match="is 2-D only"):
        validate_config(cfg_with(target={"name": "moons", "dim": 3}))
    with pytest.raises(ConfigError, match="strong cost has no gamma"):
        validate_config(cfg_with(cost={"name": "strong", "gamma": 0.5}))
    with pytest.raises(ConfigError, match="multiple of log_every"):
        validate_config(cfg_with(log_every=30, checkpoint_every=100))


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as err:
        validate_config(cfg_with(stpes=1, batch="x", target={"name": "nope"}))
    msg = str(err.value)
    assert "stpes" in msg and "batch" in msg and "nope" in msg


def test_gamma_sweep_expansion():
    cfg = validate_config(cfg_with(cost={"name": "weak", "z_size": 4}, gamma_sweep=[0, 0.5, 1]))
    exps = toy_experiments(cfg)
    assert list(exps) == ["moons_g0", "moons_g0.5", "moons_g1"]
    assert exps["moons_g0.5"]["cost"]["gamma"] == 0.5 and "gamma_sweep" not in exps["moons_g1"]
    assert toy_sweeps(cfg) == {"moons": [(0.0, "moons_g0"), (0.5, "moons_g0.5"), (1.0, "moons_g1")]}


def test_shipped_configs_validate(repo):
    for path in [repo / "config.yaml", *sorted((repo / "configs").glob("*.yaml"))]:
        cfg = load_config(path)
        raw = yaml.safe_load(path.read_text())
        assert toy_experiments(cfg) or cfg["images"]["runs"], path  # every config runs something
        assert bool(toy_experiments(cfg)) == bool(raw.get("toy", {}).get("experiments")), path
