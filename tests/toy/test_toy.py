import numpy as np
import pytest
import torch
from conftest import tiny_experiment

from notpipe import toy


def test_evaluate_reports_every_metric_for_gaussian_pair(tmp_path):
    exp = tiny_experiment(source={"name": "gaussian", "dim": 3, "cov": "random"},
                          target={"name": "gaussian", "dim": 3, "cov": "random"}, steps=10)
    setup = toy.train(exp, tmp_path / "model.pt", tmp_path / "log.csv", progress=False)
    setup, state = toy.load_trained(tmp_path / "model.pt")
    m = toy.evaluate(setup, state["train_seconds"], n_eval=256, z_eval=4)
    for key in ("not_cost", "ot_cost_exact", "cost_ratio", "ot_cost_sinkhorn", "w2_pushforward",
                "w2_noise_floor", "bary_gap", "l2_uvp", "l2_uvp_discrete", "ot_cost_closed_form",
                "train_seconds", "emd_seconds", "sinkhorn_seconds"):
        assert np.isfinite(m[key]), key
    assert m["cost_ratio"] == pytest.approx(m["not_cost"] / m["ot_cost_exact"])
    assert "cond_var" not in m and "modes_covered" not in m
    # the discrete barycentric map is a fair reference: it explains most of the variance
    assert m["l2_uvp_discrete"] < 60
    # the W2 benchmark's baselines: the linear map fitted on the samples is nearly exact
    # for Gaussians (a few % at 256 samples in 3-D), far better than the identity
    assert m["l2_uvp_linear"] < 3 < m["l2_uvp_identity"]
    assert m["l2_uvp_linear"] < m["l2_uvp_identity"] / 3
    # sample-vs-sample discrete OT overestimates the population cost (finite-n bias)
    assert m["ot_cost_exact"] > 0.9 * m["ot_cost_closed_form"] > 0


def test_evaluate_stochastic_metrics_and_mode_coverage():
    exp = tiny_experiment(source={"name": "discrete", "n": 3}, target={"name": "8gaussians"},
                          cost={"name": "weak", "gamma": 0.5, "z_size": 3}, steps=5)
    setup = toy.build(exp)
    setup.trainer.run(5, progress=False)
    m = toy.evaluate(setup, 0.0, n_eval=128, z_eval=4)
    assert m["cond_var"] >= 0 and 0 <= m["modes_covered"] <= 1


def test_fidelity_has_a_spread_over_draws_and_energy_distance_tells_maps_apart():
    """W2, floor and W2/floor are means over independent draws with a std; the energy
    distance is ~0 for a map that already gives the target and clearly > 0 otherwise."""
    from notpipe.toy.metrics import energy_distance

    exp = tiny_experiment(source={"name": "gaussian", "dim": 2}, target={"name": "gaussian", "dim": 2}, steps=1)
    setup = toy.build(exp)
    m = toy.evaluate(setup, 0.0, n_eval=256, z_eval=2, eval_draws=4)
    assert m["eval_draws"] == 4
    for key in ("w2_pushforward", "w2_noise_floor", "w2_over_floor", "energy_distance"):
        assert np.isfinite([m[key], m[f"{key}_std"], m[f"{key}_ci95"]]).all(), key
        assert m[f"{key}_std"] > 0 and m[f"{key}_ci95"] == pytest.approx(1.96 * m[f"{key}_std"] / 2)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    same = energy_distance(a, b)
    assert abs(same) < 5e-3 and energy_distance(a, b + 0.3) > 10 * abs(same)
    # a different evaluation seed gives other draws (so the spread is a real one)
    m2 = toy.evaluate(setup, 0.0, n_eval=256, z_eval=2, eval_draws=4, seed=1)
    assert m2["w2_noise_floor"] != m["w2_noise_floor"]


def test_modes_covered_counts_half_share():
    from notpipe.toy.samplers import make_sampler
    tgt = make_sampler({"name": "discrete", "atoms": [[0, 0], [10, 0], [0, 10], [10, 10]]})
    y = tgt(4000, torch.Generator().manual_seed(0))
    assert toy.modes_covered(tgt, y) == 1.0
    assert toy.modes_covered(tgt, torch.zeros(100, 2)) == 0.25
    lopsided = torch.cat([torch.zeros(90, 2), torch.tensor([[10.0, 0]] * 10)])
    assert toy.modes_covered(tgt, lopsided) == 0.25  # 10 % < half of a 25 % share


def test_plot_samples_keys():
    setup = toy.build(tiny_experiment(cost={"name": "weak", "gamma": 0.5, "z_size": 3}))
    s = toy.plot_samples(setup, n_plot=64, n_batch=16, n_fixed=3, n_draws=8)
    assert s["x"].shape == (64, 2) and s["plan"].shape == (16, 16)
    assert s["ys_fixed"].shape == (3, 8, 2) and np.isclose(s["plan"].sum(), 1.0)


def test_deterministic_map_has_no_one_to_many():
    s = toy.plot_samples(toy.build(tiny_experiment()), n_plot=32, n_batch=8)
    assert "ys_fixed" not in s
