"""The whole chain on configs/smoke.yaml, up to report/smoke.pdf (needs TeX: latexmk + pdflatex)."""

import shutil
import subprocess

import pytest
from snakemake_runner import REPO, run_snakemake

needs_tex = pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
                               reason="TeX (latexmk) or poppler-utils (pdftotext) not installed")


@pytest.mark.slow
@needs_tex
def test_smoke_config_builds_the_pdf_with_every_section_and_table(tmp_path):
    args = ["--cores", "2", "--resources", "gpu=0", "--configfile", str(REPO / "configs/smoke.yaml"),
            "--directory", str(tmp_path)]
    run_snakemake(*args)
    pdf = tmp_path / "report/smoke.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    for section in ("Method", "Toy experiments", "Image translation", "Evaluation", "Speed"):
        assert section in text, section
    for caption in ("Runs of this configuration", "Toy experiments: transport cost",
                    "Image translation on the test split", "Median training throughput"):
        assert caption in text, caption
    assert "smoke: random-weight Inception" in text  # smoke numbers are labelled
    assert "shapes_weak" in text and "moons" in text
    # one figure alone: asking for its file after a change rebuilds just that figure
    (tmp_path / "report/figures/smoke/images/shapes_weak_losses.pdf").unlink()
    proc = run_snakemake(*args, "report/figures/smoke/images/shapes_weak_losses.pdf", "-n")
    assert "image_figure_losses" in proc.stdout and "\ntrain " not in proc.stdout
