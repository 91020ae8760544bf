"""Every figure function writes a valid PDF + PNG; the toy_figure script runs from the CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from notpipe.figures import toy as plots

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "workflow" / "scripts" / "toy_figure.py"


def _samples(d: int = 2, n: int = 64, b: int = 8, k: int = 3, m: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    plan = np.eye(b)[rng.permutation(b)] / b  # a permutation plan, rows sum to 1/b
    plan[0] = plan[1] = (plan[0] + plan[1]) / 2  # two rows split their mass
    return {"x": rng.normal(size=(n, d)), "y": rng.normal(size=(n, d)) + 2,
            "tx": rng.normal(size=(n, d)) + 2, "xb": rng.normal(size=(b, d)),
            "txb": rng.normal(size=(b, d)), "yb": rng.normal(size=(b, d)), "plan": plan,
            "x_fixed": rng.normal(size=(k, d)), "ys_fixed": rng.normal(size=(k, m, d))}


def _log(gamma_varies: bool) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    step = np.arange(10, 110, 10)
    gamma = np.minimum(step / 50, 1.0) if gamma_varies else np.full(len(step), 0.5)
    return pd.DataFrame({"step": step, "loss_t": rng.normal(size=10), "loss_f": rng.normal(size=10),
                         "cost": rng.random(10), "gamma": gamma, "lr_t": 1e-4, "wall_s": step / 10.0})


def _check(stem: Path) -> None:
    pdf, png = Path(f"{stem}.pdf"), Path(f"{stem}.png")
    assert pdf.stat().st_size > 0 and png.stat().st_size > 0
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("fn", [plots.plot_scatter, plots.plot_transport, plots.plot_one_to_many])
def test_sample_figures(tmp_path, fn, d):
    stem = tmp_path / "sub" / f"fig_d{d}.gamma0.5"  # missing parent dir, dot in the stem
    pdf, png = fn(_samples(d=d), stem, "test title")
    assert (pdf, png) == (Path(f"{stem}.pdf"), Path(f"{stem}.png"))
    _check(stem)


def test_one_to_many_needs_fixed_draws(tmp_path):
    s = _samples()
    del s["x_fixed"], s["ys_fixed"]
    with pytest.raises(ValueError, match="x_fixed"):
        plots.plot_one_to_many(s, tmp_path / "f", "t")


@pytest.mark.parametrize("gamma_varies", [False, True])
def test_losses(tmp_path, gamma_varies):
    plots.plot_losses(_log(gamma_varies), tmp_path / "losses", "losses")
    _check(tmp_path / "losses")
    # one loss figure for the shared log.csv schema: toy and image runs draw the same
    from notpipe.figures import images, losses
    assert plots.plot_losses is losses.plot_losses is images.plot_losses


@pytest.mark.parametrize("gammas", [[1.0, 0.0, 0.1, 0.01], [0.3, 0.1, 0.2]])
def test_gamma_sweep(tmp_path, gammas):
    df = pd.DataFrame({"gamma": gammas, "modes_covered": np.linspace(0.25, 1, len(gammas)),
                       "cond_var": np.linspace(0, 1, len(gammas))})
    plots.plot_gamma_sweep(df, tmp_path / "sweep", "sweep")
    _check(tmp_path / "sweep")


def test_script_cli_scatter(tmp_path):
    npz = tmp_path / "samples.npz"
    np.savez_compressed(npz, **_samples())
    out = tmp_path / "figs" / "moons_scatter.pdf"
    r = subprocess.run([sys.executable, str(SCRIPT), "--kind", "scatter", "--input", str(npz),
                        "--out", str(out), "--title", "moons: scatter"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _check(out.with_suffix(""))


def test_script_help():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--kind" in r.stdout


def test_l2_uvp_against_dimension(tmp_path):
    df = pd.DataFrame({"experiment": ["g2", "g4", "g4b", "moons"], "dim": [2, 4, 4, 2],
                       "l2_uvp": [0.5, 0.8, 1.0, np.nan], "l2_uvp_discrete": [3.0, 6.0, 6.0, np.nan],
                       "l2_uvp_linear": [0.1, 0.2, 0.2, np.nan], "l2_uvp_identity": [40, 50, 50, np.nan]})
    plots.plot_l2_uvp_dim(df, tmp_path / "uvp", "uvp")
    _check(tmp_path / "uvp")
    with pytest.raises(ValueError, match="Gaussian"):
        plots.plot_l2_uvp_dim(df[df.experiment == "moons"], tmp_path / "none", "none")


def test_l2_uvp_keeps_the_wgan_baseline_apart_from_not():
    df = pd.DataFrame({"experiment": ["g2", "g2_wgan", "g16"], "method": ["NOT", "WGAN-GP", "NOT"],
                       "dim": [2, 2, 16], "l2_uvp": [0.6, 240.0, 1.0], "l2_uvp_identity": [160, 160, 32]})
    lines = plots.uvp_lines(df)
    assert list(lines["NOT"][1]) == [0.6, 1.0]  # not averaged with the baseline's 240 %
    assert list(lines["WGAN-GP"][0]) == [2.0] and list(lines["WGAN-GP"][1]) == [240.0]
    assert list(lines["identity"][1]) == [160, 32]
