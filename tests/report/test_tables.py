"""notpipe.report.tables and notpipe.report: LaTeX generated from CSVs and config."""

import pandas as pd

from notpipe import report
from notpipe.config import validate_config
from notpipe.report import tables


def test_escape_and_numbers():
    assert tables.tex("a_b & 5%") == r"a\_b \& 5\%"
    assert tables.num(None) == "--" and tables.num(float("nan")) == "--"
    assert tables.num(13.4512, 4, 0.12) == r"13.45 $\pm$ 0.12"


def test_image_table_marks_smoke_and_separates_published():
    df = pd.DataFrame([
        {"run": "a_b", "source": "handbag", "target": "shoes", "cost": "weak", "image_size": 128, "step": 100,
         "fid": 20.0, "fid_std": 0.3, "kid": 0.01, "transport_cost": 0.2, "smoke": False,
         "best_fid": 18.5, "best_step": 60,
         "published_fid": 13.45, "published_fid_std": 0.12, "published_image_size": 64},
        {"run": "s", "source": "shapes_circles", "target": "shapes_squares", "cost": "strong", "image_size": 32,
         "step": 300, "fid": 1.5, "transport_cost": 0.01, "smoke": True, "published_fid": None}])
    t = tables.image_table(df)
    assert r"\toprule" in t and r"\bottomrule" in t and "published (authors' notebooks)" in t
    assert r"a\_b &" in t and r"s$^\dagger$" in t and "not comparable" in t
    assert r"13.45 $\pm$ 0.12" in t and r"20 $\pm$ 0.3" in t
    row = [ln for ln in t.splitlines() if ln.startswith("s$")][0]
    assert row.count("&") == 12
    assert "18.5 (60)" in t and "last snapshot" in t  # the best snapshot by FID beside the last one


def test_toy_table_rows():
    df = pd.DataFrame([{"experiment": "moons", "not_cost": 0.51, "ot_cost_exact": 0.5, "cost_ratio": 1.02}])
    t = tables.toy_table(df)
    assert "moons & 0.51 & 0.5 & -- & 1.02" in t
    # the fidelity columns carry their spread over evaluation draws
    df = df.assign(w2_pushforward=0.2, w2_pushforward_std=0.01, w2_noise_floor=0.1, w2_noise_floor_std=0.005,
                   w2_over_floor=2.0, w2_over_floor_std=0.1, energy_distance=0.0012, energy_distance_ci95=0.0003)
    t = tables.toy_table(df)
    assert r"0.2 $\pm$ 0.01 & 0.1 $\pm$ 0.005 & 2 $\pm$ 0.1 & 1.2 $\pm$ 0.3" in t


def test_config_table_and_figure_lists():
    cfg = validate_config({"images": {"runs": {"r_1": {"source": "shoes", "target": "handbag",
                                                        "cost": {"name": "weak", "gamma": 0.66, "z_size": 8}}}}})
    t = report.config_table(cfg)
    assert r"r\_1 & shoes & handbag & weak & 0.66 & 8 & 128 & 64 & 10 & 100000 & 48/64" in t
    figs = report.figures_images(cfg["images"]["runs"], "/abs/figs")
    assert "/abs/figs/images/r_1_grid.pdf" in figs and "/abs/figs/images/r_1_losses.pdf" in figs
    assert "No image runs" in report.figures_images({}, "/x")
