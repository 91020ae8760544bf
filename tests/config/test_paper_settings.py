"""config.yaml against the authors' code (workflow/resources/authors_settings.yaml), and the
settings page made from both."""

import copy

import pytest

from notpipe.config import load_config, validate_config
from notpipe.config import paper_settings as ps


@pytest.fixture(scope="module")
def paper():
    return load_config(ps.CONFIG)


def test_every_paper_run_equals_the_authors_code_or_says_why(paper):
    rows = ps.compare(paper)
    assert rows, "no run of config.yaml is checked"
    unexplained = [f"{r.run}.{r.key}: ours {r.ours!r}, authors' {r.authors!r} ({r.where})"
                   for r in rows if not r.same and not r.reason]
    assert not unexplained, "\n".join(unexplained)
    # every family's runs exist in config.yaml (a renamed run would silently escape the check)
    for fam, spec in ps.read_authors()["families"].items():
        missing = set(spec["runs"]) - set(paper["images"]["runs"])
        assert not missing, f"{fam}: runs {sorted(missing)} are not in config.yaml"


def test_every_paper_run_is_checked_or_listed_with_its_source(paper):
    assert ps.unaccounted_runs(paper) == []


def test_listed_differences_are_real(paper):
    """A reason kept for a value that is now equal everywhere is stale."""
    rows = ps.compare(paper)
    for fam, spec in ps.read_authors()["families"].items():
        for key in spec.get("differs") or {}:
            assert any(not r.same for r in rows if r.family == fam and r.key == key), f"{fam}.differs.{key} is stale"


def test_a_drift_from_the_authors_fails(paper):
    """The check bites: the old Kernel NOT milestones, bf16 or the old kernel scaling are caught."""
    for key, value in (("optim.milestones", [20000, 40000, 60000, 80000]),
                       ("speed.precision", "bf16"), ("cost.scaling", "mean")):
        cfg = copy.deepcopy(paper)
        block = cfg["images"]["runs"]["textures_shoes_kernel"]
        *head, last = key.split(".")
        for part in head:
            block = block[part]
        block[last] = value
        bad = [r for r in ps.compare(cfg) if not r.same and not r.reason]
        assert [(r.run, r.key) for r in bad] == [("textures_shoes_kernel", key)]


def test_kernel_runs_default_to_the_raw_norm_and_others_to_the_per_pixel_mean(paper):
    runs = paper["images"]["runs"]
    assert runs["textures_shoes_kernel"]["cost"]["scaling"] == "raw"
    assert runs["handbag_shoes_weak_64"]["cost"]["scaling"] == "mean"
    cfg = validate_config({"images": {"runs": {"k": {"source": "shapes_circles", "target": "shapes_squares",
                                                      "image_size": 32, "cost": {"name": "kernel", "gamma": 0.3,
                                                                                 "z_size": 2},
                                                      "model": {"latent_dim": 8}}}}})
    assert cfg["images"]["runs"]["k"]["cost"]["scaling"] == "raw"


def test_paper_suite_is_fp32_and_the_speed_preset_is_an_overlay(paper, repo):
    import yaml

    assert {r["speed"]["precision"] for r in paper["images"]["runs"].values()} == {"fp32"}
    assert not any(r["speed"]["compile"] for r in paper["images"]["runs"].values())
    # Snakemake merges --configfile config.yaml configs/overlays/speed_bf16.yaml key by key
    from snakemake.utils import update_config

    raw = yaml.safe_load((repo / "config.yaml").read_text())
    update_config(raw, yaml.safe_load((repo / "configs" / "overlays" / "speed_bf16.yaml").read_text()))
    fast = validate_config(raw)
    assert {r["speed"]["precision"] for r in fast["images"]["runs"].values()} == {"bf16"}


def test_published_sizes_have_runs(paper):
    """Each published NOT / Kernel NOT FID has a run of its pair at its size."""
    import pandas as pd

    pub = pd.read_csv(ps.REPO / "workflow" / "resources" / "published_fid.csv")
    ours = pub[pub.method.str.startswith("NOT")]
    have = {(r["source"], r["target"], r["image_size"], r["cost"]["name"]) for r in paper["images"]["runs"].values()}
    for _, p in ours.iterrows():
        assert (p.source, p.target, p.image_size, p.cost) in have, p.to_dict()


def test_settings_page_is_up_to_date(paper):
    page = (ps.REPO / "docs" / "paper-settings.md").read_text()
    assert page == ps.markdown(paper), "run: python -m notpipe.config.paper_settings > docs/paper-settings.md"


def test_toy_presets_are_the_authors_toy_settings():
    from notpipe.config import toy_presets

    spec = ps.read_authors()["toy"]
    for name in spec["presets"]:
        exp = validate_config({"toy": {"experiments": {"e": {"preset": name}}}})["toy"]["experiments"]["e"]
        for key, (theirs, where) in spec["values"].items():
            assert ps._same(ps.value_at(exp, key), theirs), f"{name}.{key}: ours {ps.value_at(exp, key)!r} ({where})"
    assert set(spec["presets"]) <= set(toy_presets())


def test_the_suites_share_the_toy_presets(paper, repo):
    """config.yaml, configs/toy.yaml and configs/authors_toy.yaml take the authors' toys from one place."""
    import yaml

    for path in ("config.yaml", "configs/toy.yaml", "configs/authors_toy.yaml"):
        exps = yaml.safe_load((repo / path).read_text())["toy"]["experiments"]
        named = {e.get("preset") for e in exps.values()}
        assert {"not_toy_2d_swissroll", "not_toy_2d_8gaussians"} <= named, path
    # config.yaml's authors' toys are the presets, unchanged
    exps = paper["toy"]["experiments"]
    assert exps["swissroll"]["cost"]["gamma"] == 1.0 and exps["8gaussians"]["optim"]["lr_t"] == 1.0e-4
    assert exps["8gaussians"]["target"]["whiten"] is True and exps["circles"]["cost"]["name"] == "kernel"


def test_a_preset_is_overridden_by_the_experiment_and_an_unknown_one_is_one_line():
    from notpipe.config import ConfigError

    exp = validate_config({"toy": {"experiments": {"e": {"preset": "not_toy_2d_swissroll", "steps": 40,
                                                         "model": {"z_std": 0.5}}}}})["toy"]["experiments"]["e"]
    assert exp["steps"] == 40 and exp["model"]["z_std"] == 0.5 and exp["model"]["hidden_t"] == [100, 100, 100]
    with pytest.raises(ConfigError) as err:
        validate_config({"toy": {"experiments": {"e": {"preset": "not_toy_2d_swisroll"}}}})
    assert "toy.experiments.e.preset: unknown preset 'not_toy_2d_swisroll' (did you mean 'not_toy_2d_swissroll'?)" \
        in str(err.value)
