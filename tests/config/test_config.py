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


def test_a_sampler_key_that_does_not_apply_is_one_line():
    with pytest.raises(ConfigError) as err:
        validate_config(cfg_with(target={"name": "moons", "radii": [1.0, 2.0]}))
    lines = str(err.value).splitlines()[1:]
    assert lines == ["  toy.experiments.moons.target: sampler 'moons' does not use radii; its keys: dim, noise, scale"]
    validate_config(cfg_with(target={"name": "circles", "radii": [1.0, 2.0]}))  # where it applies


def test_sampler_keys_are_the_samplers_parameters():
    """SAMPLER_KEYS (what the config accepts) equals what notpipe.toy.samplers builds from."""
    import re

    from notpipe.config import SAMPLER_KEYS, load_schema
    from notpipe.toy.samplers import SAMPLERS, make_sampler

    schema_keys = set(load_schema()["$defs"]["sampler"]["properties"]) - {"name"}
    assert set(SAMPLER_KEYS) == set(SAMPLERS)
    for name, keys in SAMPLER_KEYS.items():
        assert keys <= schema_keys, name
        with pytest.raises(ValueError) as err:
            make_sampler({"name": name, "not_a_key": 1})
        takes = set(re.findall(r"'(\w+)'", str(err.value).split("allowed:")[1]))
        assert keys - {"seed"} == takes, name  # make_sampler reads seed for every sampler


def test_wrong_type_named():
    with pytest.raises(ConfigError, match=r"toy.experiments.moons.steps: 'ten' is not of type 'integer'"):
        validate_config(cfg_with(steps="ten"))


def test_weak_gamma_above_one_rejected_negative_allowed():
    with pytest.raises(ConfigError, match="gamma=1.5 > 1 makes the weak quadratic cost ill-posed"):
        validate_config(cfg_with(cost={"name": "weak", "gamma": 1.5, "z_size": 4}))
    validate_config(cfg_with(cost={"name": "weak", "gamma": -0.5, "z_size": 4}))
    with pytest.raises(ConfigError, match="gamma=2.0 > 1"):
        validate_config(cfg_with(cost={"name": "weak", "z_size": 4}, gamma_sweep=[0.0, 2.0]))


def test_kernel_gamma_above_one_rejected():
    with pytest.raises(ConfigError, match=r"cost.gamma: gamma=3.0 > 1 makes the kernel \(energy\) cost unbounded"):
        validate_config(cfg_with(cost={"name": "kernel", "z_size": 4}, gamma_sweep=[0.5, 3.0]))
    validate_config(cfg_with(cost={"name": "kernel", "gamma": 1.0, "z_size": 4}))


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


def test_schema_and_semantic_problems_reported_in_one_pass():
    """An unknown key no longer hides gamma > 1, unknown data sets or dimension mismatches (issue 15)."""
    cfg = cfg_with(stpes=3, cost={"name": "weak", "gamma": 1.5, "z_size": 4})
    cfg["data"] = {"build": ["nope"]}
    cfg["tyo"] = 1
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "unknown key 'stpes'" in msg and "unknown key 'tyo'" in msg
    assert "toy.experiments.moons.cost.gamma: gamma=1.5 > 1" in msg
    assert "data.build.0: unknown data set 'nope'" in msg


def test_semantic_checks_skip_only_the_broken_block():
    cfg = copy.deepcopy(BASE)
    exps = cfg["toy"]["experiments"]
    exps["bad"] = {"source": {"name": "gaussian", "dim": "x"}, "target": {"name": "moons"},
                   "cost": {"name": "weak", "gamma": "big"}, "log_every": 0}
    exps["mismatch"] = {"source": {"name": "gaussian", "dim": 3}, "target": {"name": "moons"},
                        "cost": {"name": "strong"}}
    cfg["images"] = {"runs": {"r": {"source": "shapes_circles", "target": "shapez", "image_size": 24,
                                    "cost": {"name": "strong"}}}}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)  # no TypeError / ZeroDivisionError from the broken block
    msg = str(err.value)
    assert "toy.experiments.bad.source.dim: 'x' is not of type 'integer'" in msg
    assert "toy.experiments.bad.log_every" in msg
    assert "toy.experiments.mismatch: source dim 3 != target dim 2" in msg
    assert "images.runs.r.target: unknown data set 'shapez'" in msg and "images.runs.r.image_size" in msg


@pytest.mark.parametrize("text", ["toy: 5\n", "- a\n- b\n", "toy:\n  experiments: [1]\n"])
def test_wrong_shapes_of_whole_blocks_are_one_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid config"):
        load_config(path)


@pytest.mark.parametrize("text, line", [
    ("toy:\n  experiments:\n    a: {source: [\n  b: 1\n", 5),
    ("toy:\n  experiments:\n    a:\n      steps: 3\n     batch: 4\n", 5),
    ("toy:\n\texperiments: {}\n", 2),
])
def test_yaml_syntax_error_names_file_and_line(tmp_path, text, line):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line {line}, column ") and "YAML syntax error" in msg
    assert len(msg.splitlines()) == 1
