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
    assert r"\toprule" in t and r"\bottomrule" in t and "published (reference)" in t
    assert r"a\_b &" in t and r"s$^\dagger$" in t and "not comparable" in t
    assert r"13.45 $\pm$ 0.12" in t and r"20 $\pm$ 0.3" in t
    row = [ln for ln in t.splitlines() if ln.startswith("s$")][0]
    assert row.count("&") == 14
    assert "18.5 (60)" in t and "last snapshot" in t  # the best snapshot by FID beside the last one


def _row(**kw) -> dict:
    return {"source": "mnist", "target": "fashion_mnist", "cost": "strong", "image_size": 32, "step": 1200,
            "extractor": "legacy_pytorch", "smoke": False, "fid": 203.2, "fid_identity": 209.2,
            "fid_target_halves": 39.64, **kw}


def _lines(t: str, start: str) -> list[int]:
    return [i for i, ln in enumerate(t.splitlines()) if ln.startswith(start)]


def test_image_table_keeps_real_features_apart_from_smoke():
    df = pd.DataFrame([
        _row(run="sm", source="shapes_circles", target="shapes_squares", extractor="random_seed0_smoke", smoke=True),
        _row(run="mf"),
        _row(run="gen", source="shapes_circles", target="shapes_squares"),
        _row(run="mk", extractor="clean", target="kmnist")])
    t = tables.image_table(df)
    real = _lines(t, r"\multicolumn{15}{l}{\textit{real data, real Inception features (extractor "
                     r"\texttt{legacy\_pytorch}")
    clean = _lines(t, r"\multicolumn{15}{l}{\textit{real data, real Inception features (extractor \texttt{clean}")
    gen = _lines(t, r"\multicolumn{15}{l}{\textit{generated data (not real images), real Inception features")
    smoke = _lines(t, r"\multicolumn{15}{l}{\textit{smoke: random Inception weights (extractor "
                      r"\texttt{random\_seed0\_smoke}), numbers only check the plumbing; generated data")
    assert len(real) == len(clean) == len(gen) == len(smoke) == 1
    # each run right under its own block's title; real features first, smoke last
    assert _lines(t, "mf &") == [real[0] + 1] and _lines(t, "mk &") == [clean[0] + 1]
    assert _lines(t, "gen &") == [gen[0] + 1] and _lines(t, "sm$^\\dagger$ &") == [smoke[0] + 1]
    assert real[0] < clean[0] < gen[0] < smoke[0]
    caption = [ln for ln in t.splitlines() if ln.startswith(r"\caption")][0]
    assert "clean-fid)" not in caption and "each block names" in caption
    # one extractor, real: no smoke block, no smoke note, and the extractor named
    one = tables.image_table(pd.DataFrame([_row(run="mf")]))
    assert r"\textit{smoke" not in one and r"\dagger" not in one and "clean-fid" not in one
    assert r"\texttt{legacy\_pytorch}" in one


def test_image_table_has_the_identity_map_and_the_floor_beside_fid():
    df = pd.DataFrame([_row(run="mf", published_fid=13.45, published_image_size=32),
                       _row(run="gen", source="noise", fid_identity=None)])
    t = tables.image_table(df, generated=[])
    assert "step & FID of $T$ & FID identity & FID floor & best FID (step)" in t
    assert "mnist $\\to$ fashion\\_mnist & strong & 32 & 1200 & 203.2 & 209.2 & 39.64 &" in t
    assert _lines(t, "gen &") and "& 203.2 & -- & 39.64 &" in t.splitlines()[_lines(t, "gen &")[0]]
    assert t.splitlines()[_lines(t, "mf &")[0]].endswith("& 13.45 & 32 \\\\")  # published columns last
    assert r"\cmidrule(lr){1-13}\cmidrule(lr){14-15}" in t and "identity map" in t and "floor" in t


def test_generated_datasets_follow_the_registry():
    datasets = {"mnist": {"format": "idx"}, "my_shapes": {"format": "shapes"},
                "noisy_shapes": {"format": "derived", "base": "my_shapes"},
                "noisy_celeba": {"format": "derived", "base": "celeba"}, "celeba": {"format": "celeba"}}
    assert tables.generated_datasets(datasets) == ["my_shapes", "noisy_shapes"]
    assert {"shapes_circles", "shapes_squares"} <= set(tables.generated_datasets())
    assert "mnist" not in tables.generated_datasets()
    df = pd.DataFrame([_row(run="x", source="my_shapes", target="mnist")])
    assert "generated data (not real images)" in tables.image_table(df, tables.generated_datasets(datasets))
    assert "generated data" not in tables.image_table(df)


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


def test_otm_rows_generation_has_no_lpips_content_and_restoration_gets_its_table():
    df = pd.DataFrame([
        {"run": "gen", "source": "noise", "target": "celeba", "cost": "strong", "image_size": 64, "step": 10,
         "fid": 30.0, "lpips_content": None, "smoke": False, "published_fid": 6.5, "published_image_size": 64},
        {"run": "den", "source": "celeba_noise", "target": "celeba_clean", "cost": "strong", "image_size": 64,
         "step": 10, "fid": 20.0, "lpips_content": 0.1, "psnr": 25.0, "psnr_input": 11.0, "mse": 0.003,
         "mse_input": 0.08, "fid_input": 90.0, "smoke": False, "published_fid": 5.92, "published_wgan_fid": 25.49,
         "published_input_fid": 166.59}])
    t = tables.image_table(df)
    gen = [ln for ln in t.splitlines() if ln.startswith("gen &")][0]
    assert r"n/a$^\ddagger$" in gen and "no LPIPS content term" in t
    r = tables.restoration_table(df)
    row = [ln for ln in r.splitlines() if ln.startswith("den &")][0]
    assert "gen &" not in r and "20 & 90 & 25 & 11 & 0.003 & 0.08 & 5.92 & 25.49 & 166.6" in row
    assert "published FID (OTM paper)" in r and "tab:restoration" in r
    assert tables.restoration_table(df.drop(columns=["psnr"])) == ""


def test_image_table_marks_smoke_lpips_in_a_real_block():
    t = tables.image_table(pd.DataFrame([_row(run="mf", lpips_content=0.16, lpips_diversity=0.027,
                                              lpips_smoke=True),
                                         _row(run="mb", lpips_content=0.2, lpips_smoke=False)]), generated=[])
    mf = [ln for ln in t.splitlines() if ln.startswith("mf &")][0]
    mb = [ln for ln in t.splitlines() if ln.startswith("mb &")][0]
    assert r"0.16$^\S$" in mf and r"0.027$^\S$" in mf and r"\S" not in mb
    assert r"$^\S$ LPIPS with a random trunk" in t
