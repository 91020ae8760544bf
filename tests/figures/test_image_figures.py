"""Image-stage figures: every kind writes a valid PDF + PNG, smoke FIDs are labelled as
such, throughput takes the median after warm-up, and the image_figure script draws a
grid from a real (tiny) snapshot."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_image_run

from notpipe.figures import images as ip
from notpipe.figures import style

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "workflow" / "scripts" / "image_figure.py"
SMOKE_TEXT = "FID (smoke: random-weight Inception)"


def _script():
    spec = importlib.util.spec_from_file_location("image_figure", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(stem: Path) -> None:
    pdf, png = Path(f"{stem}.pdf"), Path(f"{stem}.png")
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def _flat(text: str) -> str:
    return " ".join(text.split())


def _log(n: int = 8, gamma_varies: bool = False, grad_norms: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    step = np.arange(1, n + 1) * 25
    df = pd.DataFrame({"step": step, "loss_t": rng.normal(size=n), "loss_f": rng.normal(size=n),
                       "cost": rng.random(n), "gamma": np.minimum(step / 100, 1) if gamma_varies else 0.0,
                       "lr_t": 1e-4, "lr_f": 1e-4, "wall_s": step / 2.0, "steps_per_s": 2 + rng.random(n),
                       "images_per_s": 100 + rng.random(n)})
    if grad_norms:
        df["grad_norm_t"], df["grad_norm_f"] = rng.random(n) + 0.1, rng.random(n) + 0.1
    return df


def _curve(smoke: bool, optional: bool = True) -> pd.DataFrame:
    step = np.arange(100, 600, 100)
    df = pd.DataFrame({"run": "r", "step": step, "fid": 300 / np.sqrt(step),
                       "transport_cost": 0.05 + step / 1e4, "smoke": smoke})
    if optional:
        df["kid"], df["lpips_content"], df["lpips_diversity"] = 0.01, 0.2, 0.1
    return df


def _summary(smoke: bool = False, fid_std: bool = True) -> pd.DataFrame:
    df = pd.DataFrame({"run": ["hs_strong", "hs_weak", "tx_kernel"], "source": ["handbag", "handbag", "textures"],
                       "target": "shoes", "cost": ["strong", "weak", "kernel"], "image_size": 64,
                       "fid": [20.0, 18.0, 30.0], "transport_cost": [0.05, 0.08, 0.1], "smoke": smoke,
                       "published_fid": [13.77, 13.45, None], "published_image_size": [64, 64, None]})
    if fid_std:
        df["fid_std"] = [None, 0.3, 0.5]
    return df


# --------------------------------------------------------------------- style
def test_style():
    style.apply()
    assert plt.rcParams["pdf.fonttype"] == 42
    assert plt.rcParams["figure.constrained_layout.use"]
    assert [c.lower() for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]] == \
        [c.lower() for c in style.PALETTE]
    assert style.figsize("two") == (style.TWO_COLUMN, pytest.approx(style.TWO_COLUMN * 0.62))
    assert style.figsize("one", 1.0) == (style.ONE_COLUMN, style.ONE_COLUMN)
    with pytest.raises(ValueError):
        style.figsize("three")


# --------------------------------------------------------------------- each figure
@pytest.mark.parametrize("gamma_varies", [False, True])
@pytest.mark.parametrize("grad_norms", [False, True])
def test_losses(tmp_path, gamma_varies, grad_norms):
    log = _log(gamma_varies=gamma_varies, grad_norms=grad_norms)
    fig = ip.figure_losses(log, "t")
    main = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(main) == (3 if grad_norms else 2)
    assert all(ax.get_ylabel() for ax in fig.axes)
    assert any(ax.get_ylabel() == "γ" for ax in fig.axes) == gamma_varies
    plt.close(fig)
    pdf, png = ip.plot_losses(log, tmp_path / "sub" / "r_losses", "r: training")
    assert (pdf, png) == (tmp_path / "sub" / "r_losses.pdf", tmp_path / "sub" / "r_losses.png")
    _check(tmp_path / "sub" / "r_losses")


@pytest.mark.parametrize("smoke", [False, True])
def test_fid_curve(tmp_path, smoke):
    fig = ip.figure_fid_curve(_curve(smoke), "curve")
    fid_ax, cost_ax = fig.axes
    assert (_flat(fid_ax.get_ylabel()) == SMOKE_TEXT) == smoke
    assert ("smoke" in fid_ax.get_ylabel()) == smoke
    assert fig.get_suptitle() == ("curve [smoke]" if smoke else "curve")
    assert cost_ax.get_ylabel() and fid_ax.get_xlabel() == cost_ax.get_xlabel() == "f-step"
    plt.close(fig)
    ip.plot_fid_curve(_curve(smoke, optional=False), tmp_path / "curve", "curve")
    _check(tmp_path / "curve")


def _baselines(smoke: bool = False) -> pd.DataFrame:
    """A baselines.csv: the identity map's FID/KID and the floor (target halves)."""
    ext = "random_seed0_smoke" if smoke else "legacy_pytorch"
    return pd.DataFrame([{"run": "r", "step": None, "metric": m, "map": k, "value": v, "extractor": ext,
                          "smoke": smoke} for m, k, v in (("fid", "identity", 209.2), ("kid", "identity", 0.18),
                                                           ("fid", "target_halves", 39.64),
                                                           ("kid", "target_halves", 0.0))])


def test_fid_curve_draws_the_identity_map_and_the_floor():
    fig = ip.figure_fid_curve(_curve(False), "curve", _baselines())
    fid_ax, cost_ax = fig.axes
    refs = {ln.get_label(): set(ln.get_ydata()) for ln in fid_ax.get_lines()}
    assert refs["identity map (source inputs): 209.2"] == {209.2}
    assert refs["floor (target halves): 39.64"] == {39.64}
    legend = [t.get_text() for t in fid_ax.get_legend().get_texts()]
    assert "identity map (source inputs): 209.2" in legend and "floor (target halves): 39.64" in legend
    lo, hi = fid_ax.get_ylim()
    assert lo < 39.64 and hi > 209.2  # both lines inside the panel
    assert len(cost_ax.get_lines()) == 1  # the reference lines are FIDs: the FID panel only
    plt.close(fig)
    fig = ip.figure_fid_curve(_curve(False), "curve")  # without baselines.csv: the curve alone
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["r"]
    plt.close(fig)
    assert ip.fid_baselines(_baselines().query("map != 'target_halves'"))[0]["map"] == "identity"
    assert len(ip.fid_baselines(_baselines().query("map != 'target_halves'"))) == 1
    assert ip.fid_baselines(pd.DataFrame(columns=["run", "metric", "map", "value"])) == []


@pytest.mark.parametrize("fid_smoke", [False, True])
def test_fid_curve_smoke_label_follows_the_fid_extractor(fid_smoke):
    """curve.csv's smoke is true when LPIPS alone used random weights; the FID rows say what the FID is."""
    fig = ip.figure_fid_curve(_curve(True), "curve", _baselines(smoke=fid_smoke))
    assert (_flat(fig.axes[0].get_ylabel()) == SMOKE_TEXT) == fid_smoke
    assert fig.get_suptitle() == ("curve [smoke]" if fid_smoke else "curve")
    plt.close(fig)


def test_smoke_flag_from_csv_strings(tmp_path):
    p = tmp_path / "curve.csv"
    _curve(True).to_csv(p, index=False)
    assert ip.is_smoke(pd.read_csv(p))
    assert ip.is_smoke(pd.DataFrame({"smoke": ["False", "True"]}))
    assert not ip.is_smoke(pd.DataFrame({"smoke": ["False", "false"]}))
    assert not ip.is_smoke(pd.DataFrame({"fid": [1.0]}))


def test_tradeoff(tmp_path):
    fig = ip.figure_tradeoff(_summary(), "trade-off")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "FID" and ax.get_xlabel()
    refs = [ln for ln in ax.get_lines() if ln.get_label().startswith("published")]
    assert len(refs) == 2  # the kernel run has no published number
    assert all("authors' notebooks, 64 px" in ln.get_label() for ln in refs)
    assert {t.get_text() for t in ax.texts} >= {"hs_strong", "hs_weak", "tx_kernel"}
    plt.close(fig)
    ip.plot_tradeoff(_summary(fid_std=False), tmp_path / "tradeoff", "trade-off")
    _check(tmp_path / "tradeoff")


def test_tradeoff_single_reference_label():
    fig = ip.figure_tradeoff(_summary().iloc[:1], "t")
    (ref,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("published")]
    assert ref.get_label() == "published (authors' notebooks, 64 px)"
    plt.close(fig)


def test_tradeoff_smoke_has_no_reference(tmp_path):
    fig = ip.figure_tradeoff(_summary(smoke=True), "trade-off")
    ax = fig.axes[0]
    assert _flat(ax.get_ylabel()) == SMOKE_TEXT
    assert fig.get_suptitle().endswith("[smoke]")
    assert not [ln for ln in ax.get_lines() if ln.get_label().startswith("published")]
    plt.close(fig)
    ip.plot_tradeoff(_summary(smoke=True), tmp_path / "tradeoff_smoke", "trade-off")
    _check(tmp_path / "tradeoff_smoke")


def test_throughput_median(tmp_path):
    a = pd.DataFrame({"step": [10, 20, 30, 40], "images_per_s": [1.0, 10.0, 30.0, 20.0],
                      "steps_per_s": [0.1, 1.0, 3.0, 2.0]})  # first row is warm-up
    b = pd.DataFrame({"step": [10, 20], "images_per_s": [4.0, 6.0], "steps_per_s": [0.4, 0.6]})
    c = pd.DataFrame({"step": [10, 20, 30], "steps_per_s": [1.0, 2.0, 4.0]})  # no images_per_s
    t = ip.throughput_table({"a": a, "b": b, "c": c}).set_index("run")
    assert t.loc["a", "images_per_s"] == 20.0 and t.loc["a", "steps_per_s"] == 2.0  # median of rows 2..4
    assert t.loc["b", "images_per_s"] == 5.0  # < 3 rows: nothing dropped
    assert np.isnan(t.loc["c", "images_per_s"]) and t.loc["c", "steps_per_s"] == 3.0
    fig = ip.figure_throughput({"a": a, "b": b}, "thr")
    ax = fig.axes[0]
    assert sorted(p.get_width() for p in ax.patches) == [5.0, 20.0]
    assert any("2 f-steps/s" in t.get_text() for t in ax.texts)
    assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)
    ip.plot_throughput({"a": a, "b": b, "c": c}, tmp_path / "thr", "throughput")
    _check(tmp_path / "thr")


def test_grid_tiles(tmp_path):
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 255, (5, 8, 6, 3), dtype=np.uint8) for _ in range(3)]
    m = ip.tile(rows)
    assert m.shape == (3 * 9 - 1, 5 * 7 - 1, 3) and m.dtype == np.uint8
    assert (m[8] == 255).all() and (m[:, 6] == 255).all()  # 1-px white gutters
    np.testing.assert_array_equal(m[9:17, 7:13], rows[1][1])
    assert ip.grid_labels(2) == ["input", "T(x)"]
    assert ip.grid_labels(4)[0] == "input" and len(ip.grid_labels(4)) == 4
    with pytest.raises(ValueError, match="shape"):
        ip.tile([rows[0], rows[1][:4]])
    fig = ip.figure_grid(rows, ["input", "a", "b"], "g")
    ax = fig.axes[0]
    assert len(ax.images) == 1 and [t.get_text() for t in ax.get_yticklabels()] == ["input", "a", "b"]
    assert fig.get_size_inches()[0] == style.TWO_COLUMN
    plt.close(fig)
    ip.plot_grid(rows, ["input", "a", "b"], tmp_path / "grid", "grid")
    _check(tmp_path / "grid")


# --------------------------------------------------------------------- the script
def test_script_grid_from_snapshot(tmp_path, shapes_data):
    from notpipe import train as images

    run = tiny_image_run(cost={"name": "weak", "gamma": 0.5, "z_size": 2})
    out = tmp_path / "train" / "r"
    images.train(run, "r", shapes_data, out, progress=False)
    snap = images.snapshot_path(out, run["steps"])
    mod = _script()
    rows, labels, _ = mod.grid_rows(str(snap), str(shapes_data), n_inputs=5, n_z=3)
    assert labels[0] == "input" and len(rows) == len(labels) == 4  # stochastic: 3 draws
    assert all(r.shape == (5, 16, 16, 3) and r.dtype == np.uint8 for r in rows)
    pdf = tmp_path / "figs" / "r_grid.pdf"
    mod.main("grid", [str(snap)], str(pdf), "", data_dir=str(shapes_data), n_inputs=5, n_z=3)
    _check(pdf.with_suffix(""))
    # throughput takes several logs and names each run by its folder
    other = tmp_path / "train" / "s" / "log.csv"
    other.parent.mkdir()
    pd.read_csv(out / "log.csv").to_csv(other, index=False)
    thr = tmp_path / "figs" / "thr.pdf"
    mod.main("throughput", [str(out / "log.csv"), str(other)], str(thr), "throughput")
    _check(thr.with_suffix(""))
    with pytest.raises(ValueError, match="exactly one"):
        mod.main("losses", [str(out / "log.csv")] * 2, str(tmp_path / "x.pdf"), "")
    with pytest.raises(ValueError, match="data"):
        mod.main("grid", [str(snap)], str(tmp_path / "x.pdf"), "")


def test_script_cli_losses(tmp_path):
    csv = tmp_path / "train" / "r" / "log.csv"
    csv.parent.mkdir(parents=True)
    _log().to_csv(csv, index=False)
    out = tmp_path / "figs" / "r_losses.pdf"
    r = subprocess.run([sys.executable, str(SCRIPT), "--kind", "losses", "--input", str(csv),
                        "--out", str(out), "--title", "r: training"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fontTools" not in r.stderr  # font subsetting chatter stays out of the logs
    _check(out.with_suffix(""))


def test_script_draws_baselines_from_the_named_input(tmp_path):
    """The fid_curve rule's named input ``baselines`` reaches the figure; other kinds refuse it."""
    import logging
    import runpy
    from types import SimpleNamespace

    from snakemake.iocontainers import InputFiles

    curve, base = tmp_path / "curve.csv", tmp_path / "baselines.csv"
    _curve(False).to_csv(curve, index=False)
    _baselines().to_csv(base, index=False)
    outs = {}
    for name, inputs in (("plain", [str(curve)]),
                         ("with", InputFiles(fromdict={"data": str(curve), "baselines": str(base)}))):
        out, logf = tmp_path / name / "r_fid_curve.pdf", tmp_path / f"{name}.log"
        smk = SimpleNamespace(params=SimpleNamespace(kind="fid_curve", title="r"), input=inputs,
                              output=[str(out)], log=[str(logf)])
        try:
            runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk}, run_name="__main__")
        finally:
            logging.basicConfig(force=True)  # drop the handler on the closed log file
        outs[name] = (out.with_suffix(".png").read_bytes(), logf.read_text())
    assert "identity map's FID and the floor drawn from" in outs["with"][1]
    assert "floor" not in outs["plain"][1] and outs["with"][0] != outs["plain"][0]
    with pytest.raises(ValueError, match="only --kind fid_curve draws baselines"):
        _script().main("losses", [str(curve)], str(tmp_path / "x.pdf"), baselines=str(base))


def test_script_help():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--kind" in r.stdout and "throughput" in r.stdout and "--n-z" in r.stdout


def test_script_under_snakemake(tmp_path):
    """The ``script:`` path: params/input/output/log as Snakemake passes them, log file written."""
    import runpy
    from types import SimpleNamespace

    csv = tmp_path / "curve.csv"
    _curve(True).to_csv(csv, index=False)
    out = tmp_path / "figs" / "r_fid_curve.pdf"
    logf = tmp_path / "logs" / "fig.log"
    smk = SimpleNamespace(params=SimpleNamespace(kind="fid_curve", title="r: FID"), input=[str(csv)],
                          output=[str(out)], log=[str(logf)])
    try:
        runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk}, run_name="__main__")
    finally:
        import logging
        logging.basicConfig(force=True)  # drop the handler on the closed log file
    _check(out.with_suffix(""))
    assert "wrote" in logf.read_text()
