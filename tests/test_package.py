"""The package layout (issue 12): subpackages mirror the rule files, torch stays out of
table jobs, the schema ships inside the wheel, and conventions live in one place."""

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PKG = REPO / "src" / "notpipe"


def test_subpackages_mirror_the_rule_files_and_modules_stay_small():
    rules = {p.stem for p in (REPO / "workflow" / "rules").glob("*.smk")} - {"common"}
    packages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert {"data", "toy", "train", "evaluate", "report"} <= rules & packages
    assert len(list(PKG.glob("*.py"))) <= 8  # the package top level
    for path in PKG.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path


def test_table_and_report_modules_do_not_import_torch():
    code = ("import sys; import notpipe.evaluate.aggregate, notpipe.report, notpipe.report.tables, "
            "notpipe.data.download, notpipe.stage, notpipe.paths, notpipe.seeds; "
            "from notpipe.evaluate import curve, summary; from notpipe.report import compile_pdf; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_figure_and_table_scripts_run_without_torch(tmp_path):
    """A figure or table job never imports torch: run the real scripts on small inputs with
    ``-X importtime`` and look for torch among the imports (figures through the one
    stage.entry convention, like every other script)."""
    import pandas as pd

    log = tmp_path / "log.csv"
    pd.DataFrame({"step": [1, 2, 3], "loss_t": [1.0, 0.5, 0.2], "loss_f": [0.1, 0.2, 0.1],
                  "cost": [0.3, 0.2, 0.1], "gamma": [0.5, 0.5, 0.5]}).to_csv(log, index=False)
    metrics = tmp_path / "a" / "metrics.csv"
    metrics.parent.mkdir()
    pd.DataFrame({"metric": ["w2"], "value": [1.0]}).to_csv(metrics, index=False)
    scripts = REPO / "workflow" / "scripts"
    jobs = [[scripts / "toy_figure.py", "--kind", "losses", "--input", log, "--out", tmp_path / "t.pdf"],
            [scripts / "image_figure.py", "--kind", "losses", "--input", log, "--out", tmp_path / "i.pdf"],
            [scripts / "toy_table.py", "--kind", "summary", "--input", metrics, "--out", tmp_path / "s.csv"]]
    for job in jobs:
        r = subprocess.run([sys.executable, "-X", "importtime", *map(str, job)], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        imported = {ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines() if "import time:" in ln}
        assert "torch" not in imported, job[0].name
        assert "matplotlib" in imported or job[0].name == "toy_table.py"
    assert (tmp_path / "t.png").is_file() and (tmp_path / "i.png").is_file() and (tmp_path / "s.csv").is_file()


def test_rules_and_library_ask_the_layout_for_every_path():
    """No path convention is spelled outside notpipe.paths: no f-string joins folders with
    '/' in the rules, the stage scripts or the library (issue 12)."""
    import re

    pattern = re.compile(r'f"[^"\n]*\}/')
    allowed = {"report.smk": ["workflow.basedir"],  # the repository's own report sources
               "latex.py": ["['t_base']}/"],  # "48/64" in the config table, not a path
               "tracking.py": ["{r.map}/{r.metric}"]}  # a TensorBoard tag, not a path
    files = [*sorted((REPO / "workflow" / "rules").glob("*.smk")), *sorted((REPO / "workflow" / "scripts").glob("*.py")),
             *[p for p in sorted(PKG.rglob("*.py")) if p.name != "paths.py"]]
    bad = []
    for path in files:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not any(a in line for a in allowed.get(path.name, [])):
                bad.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_sampler_names_are_one_list():
    from notpipe.config import PLANAR_SAMPLERS, load_schema
    from notpipe.toy.samplers import SAMPLERS

    enum = load_schema()["$defs"]["sampler"]["properties"]["name"]["enum"]
    assert set(enum) == set(SAMPLERS) and PLANAR_SAMPLERS <= set(SAMPLERS)


@pytest.mark.slow
def test_schema_loads_from_an_installed_wheel(tmp_path):
    """`pip install .` (not editable) into a fresh venv, then validate configs/toy.yaml from elsewhere."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=True, system_site_packages=False)
    py = env / "bin" / "python"
    target, source = tmp_path / "site", tmp_path / "source"  # build from a copy: nothing is written to the repo
    source.mkdir()
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, text=True)
    assert (target / "notpipe" / "config" / "schema.yaml").is_file()
    # the fresh venv has no dependencies: give it ours, but the notpipe package from the wheel
    deps = [p for p in sys.path if p.endswith("site-packages")]
    code = ("import sys, yaml, notpipe.config as c; assert 'src' not in c.__file__, c.__file__; "
            f"cfg = c.load_config({str(REPO / 'configs' / 'toy.yaml')!r}); print(cfg['suite'])")
    env_vars = {"PYTHONPATH": ":".join([str(target), *deps]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(py), "-S", "-c", "import site; site.main(); " + code], cwd=tmp_path,
                         capture_output=True, text=True, env=env_vars)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())["suite"]
    assert not Path(target / "notpipe" / "config" / "__init__.py").read_text().count("parents[")
