"""`notpipe doctor` on this machine's real state (no GPU here; TeX present or not)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(\S.*?)\s{2,}(ok|warn|FAIL|\?)(?:\s+|$)(.*)$")


def doctor(*args, cwd=REPO):
    exe = shutil.which("notpipe")
    cmd = [exe] if exe else [sys.executable, "-m", "notpipe.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def table(out: str) -> dict[str, tuple[str, str]]:
    """``{check: (status, detail and fix joined)}`` of the printed table."""
    rows, last = {}, None
    body = out.split("-" * 100)[1]
    for line in body.strip("\n").splitlines():
        m = ROW.match(line)
        if m:
            last = m[1].strip()
            rows[last] = [m[2], m[3]]
        else:
            assert last and line.startswith(" "), line
            rows[last][1] += " " + line.strip()
    return {k: (s, " ".join(d.split())) for k, (s, d) in rows.items()}


def write_config(tmp_path: Path, **edit) -> Path:
    """configs/toy.yaml with results_dir in tmp_path and ``edit`` applied (dotted keys)."""
    cfg = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    for key, value in edit.items():
        *parents, leaf = key.split(".")
        d = cfg
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_toy_config_can_run():
    res = doctor("doctor", "--configfile", "configs/toy.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert all(len(line) <= 100 for line in res.stdout.splitlines())
    rows = table(res.stdout)
    assert rows["python"][0] == "ok"
    assert rows["torch"][0] == "ok"
    assert rows["gpu"][0] == "warn" and "no GPU" in rows["gpu"][1]  # this machine has none
    tex_status, tex_detail = rows["tex"]
    if shutil.which("latexmk") and shutil.which("pdflatex"):
        assert tex_status == "ok"
    else:
        assert tex_status == "warn" and "not found" in tex_detail and "apt-get install" in tex_detail
        assert ("latexmk" in tex_detail) == (shutil.which("latexmk") is None)
    for name in ("shapes_circles_32", "shapes_squares_32"):
        assert rows[f"data {name}"][0] == "ok"
    assert rows["weights"] == ("ok", "none needed (random smoke networks)")
    assert rows["disk"][0] == "ok" and "free" in rows["disk"][1]
    assert rows["profile"][0] in ("ok", "warn")  # profiles/default may be absent in a checkout
    assert rows["run shapes_strong"][0] == "ok"
    assert rows["toy experiments"][0] == "ok"
    assert "0 FAIL" in res.stdout


def test_offline_missing_weights_name_url_and_full_path(tmp_path):
    from notpipe.evaluate.weights import LEGACY_FILE, LEGACY_URL, LPIPS_URLS

    cfg = write_config(tmp_path, **{"data.offline": True, "eval.feature_extractor": "legacy_pytorch",
                                    "eval.lpips_backbone": "pretrained"})
    res = doctor("doctor", "--configfile", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    rows = table(res.stdout)
    weights = tmp_path / "results" / "weights"
    status, text = rows["weights fid"]
    assert status == "FAIL" and LEGACY_URL in text and str(weights / LEGACY_FILE) in text
    status, text = rows["weights lpips"]
    assert status == "FAIL" and LPIPS_URLS["alex"] in text and str(weights / "alexnet-owt-7be5be79.pth") in text
    assert rows["run shapes_strong"][0] == "warn"  # trains; its evaluation is blocked

    # the same files present: the config can run offline
    weights.mkdir(parents=True)
    for name in (LEGACY_FILE, "alexnet-owt-7be5be79.pth"):
        (weights / name).write_bytes(b"x")
    res = doctor("doctor", "--configfile", str(cfg))
    assert res.returncode == 0, res.stdout
    assert table(res.stdout)["weights fid"][0] == "ok"


def test_online_weights_are_not_checked_without_the_option(tmp_path):
    cfg = write_config(tmp_path, **{"data.offline": False, "eval.feature_extractor": "clean"})
    res = doctor("doctor", "--configfile", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = table(res.stdout)
    assert rows["weights fid"] == ("?", "inception-2015-12-05.pt to download; host not checked "
                                        "(--check-downloads tries it)")
    assert "weights lpips" not in rows  # toy.yaml: random LPIPS trunk
    assert rows["run shapes_strong"] == ("ok", "can start (after downloads)")
    assert "1 download host(s) not checked (--check-downloads)" in res.stdout


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_check_downloads_contacts_each_host(tmp_path, http_server):
    http_server.files["/set.zip"] = (b"PK" + bytes(100), "application/zip")
    down = f"http://127.0.0.1:{_closed_port()}/gone.zip"
    sets = {**yaml.safe_load((REPO / "configs" / "toy.yaml").read_text()).get("datasets", {}),
            "up_set": {"url": http_server.url("/set.zip"), "format": "image_folder_zip"},
            "down_set": {"url": down, "format": "image_folder_zip"}}
    cfg = write_config(tmp_path, **{"datasets": sets, "data.build": ["up_set", "down_set"], "data.image_size": 32,
                                    "data.offline": False})
    res = doctor("doctor", "--configfile", str(cfg))  # not asked: no request at all
    assert res.returncode == 0, res.stdout + res.stderr
    assert table(res.stdout)["data up_set_32"][0] == "?" and not http_server.requests

    res = doctor("doctor", "--configfile", str(cfg), "--check-downloads")
    assert res.returncode == 1, res.stdout + res.stderr
    rows = table(res.stdout)
    status, text = rows["data up_set_32"]
    assert status == "ok" and "127.0.0.1 answers (HTTP 200)" in text
    assert [m for m, p, _ in http_server.requests] == ["HEAD"]
    status, text = rows["data down_set_32"]
    assert status == "FAIL" and "cannot reach 127.0.0.1 within 5 s" in text
    raw = tmp_path / "results" / "data" / "raw"
    from notpipe.paths import download_relpath

    assert f"download {down} elsewhere, save it as {raw / download_relpath(down)} and set data.offline: true" in text


def test_python_m_notpipe_cli_runs_the_command():
    """Without the venv's bin/ on PATH, `python -m notpipe.cli` is the command."""
    res = subprocess.run([sys.executable, "-m", "notpipe.cli", "doctor", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: notpipe doctor") and "--check-downloads" in res.stdout


def test_missing_local_only_dataset(tmp_path):
    from notpipe.data.datasets import DEFAULT_DATASETS

    assert DEFAULT_DATASETS["celeba_male"]["path"] == ["img_align_celeba.zip", "list_attr_celeba.txt"]
    toy = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())["images"]["runs"]["shapes_strong"]
    runs = {"shapes_strong": toy, "celeba_strong": {**toy, "source": "celeba_male", "target": "celeba_female"}}
    cfg = write_config(tmp_path, **{"images.runs": runs})
    res = doctor("doctor", "--configfile", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    rows = table(res.stdout)
    raw = tmp_path / "results" / "data" / "raw"
    status, text = rows["data celeba_male_32"]
    assert status == "FAIL"
    assert "fetch img_align_celeba.zip, list_attr_celeba.txt" in text
    assert "mmlab.ie.cuhk.edu.hk" in text  # where to get it: the registry's note
    assert str(raw / "img_align_celeba.zip") in text and str(raw / "list_attr_celeba.txt") in text
    assert rows["data celeba_female_32"][0] == "FAIL"
    status, text = rows["run celeba_strong"]
    assert status == "FAIL" and "cannot start" in text and "celeba_male_32" in text
    assert rows["run shapes_strong"][0] == "ok"  # the other run can start


def test_missing_profile_is_a_failure_only_when_asked(tmp_path):
    res = doctor("doctor", "--configfile", "configs/toy.yaml", "--profile", str(tmp_path / "nope"))
    assert res.returncode == 1
    assert table(res.stdout)["profile"][0] == "FAIL"


@pytest.mark.parametrize("args", [["--help"], ["doctor", "--help"]])
def test_help(args):
    res = doctor(*args)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: notpipe")
    assert ("--configfile" in res.stdout) == (args[0] == "doctor")


def test_invalid_config_one_line_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite: x\nresults_dirr: /tmp\n")
    res = doctor("doctor", "--configfile", str(bad))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'results_dirr'" in lines[0] and str(bad) in lines[0]


def test_tex_missing_is_a_warning_with_the_apt_line(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}  # no /usr/bin: no TeX
    exe = shutil.which("notpipe", path=env["PATH"])
    cmd = [exe] if exe else [sys.executable, "-m", "notpipe.cli"]
    res = subprocess.run([*cmd, "doctor", "--configfile", "configs/toy.yaml"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr  # report.build: auto -> figures and tables only
    status, text = table(res.stdout)["tex"]
    assert status == "warn" and "latexmk and pdflatex not found" in text
    assert "fix: apt-get install --no-install-recommends texlive-latex-recommended" in text


def test_gpu_rows_without_bf16(monkeypatch):
    """The GPU branch, in-process with a faked torch.cuda (this machine has no GPU)."""
    import contextlib
    import types

    import torch

    from notpipe.cli import doctor
    from notpipe.config import load_config

    props = types.SimpleNamespace(name="Fake V100", total_memory=32 * 2**30)
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kw: False)
    rows, n = doctor.check_torch(load_config(REPO / "config.yaml"))  # the paper suite is fp32
    assert n == 1
    assert {r.check: r for r in rows}["gpu 0"].status == "ok"
    import yaml
    from snakemake.utils import update_config

    from notpipe.config import validate_config

    raw = yaml.safe_load((REPO / "config.yaml").read_text())  # with the bf16 speed overlay
    update_config(raw, yaml.safe_load((REPO / "configs" / "overlays" / "speed_bf16.yaml").read_text()))
    rows, n = doctor.check_torch(validate_config(raw))
    gpu = {r.check: r for r in rows}["gpu 0"]
    assert gpu.status == "warn" and gpu.detail.startswith("Fake V100, 32 GiB, bf16 no")
    assert "precision: fp32" in gpu.fix


def test_otm_runs_need_the_base_of_derived_sets_and_no_noise_data_set():
    from notpipe.cli.doctor import needed_datasets
    from notpipe.config import validate_config

    cfg = validate_config({
        "datasets": {"sq_clean": {"format": "derived", "base": "shapes_squares", "half": 1},
                     "sq_gray": {"format": "derived", "base": "shapes_squares", "half": 0, "degrade": {"name": "gray"}}},
        "images": {"runs": {
            "restore": {"source": "sq_gray", "target": "sq_clean", "image_size": 32, "cost": {"name": "strong"}},
            "gen": {"source": "noise", "noise": {"shape": [3, 4, 4], "upsample": 8}, "target": "shapes_squares",
                    "image_size": 32, "cost": {"name": "strong"}}}}})
    assert needed_datasets(cfg) == [("shapes_squares", 32), ("sq_gray", 32), ("sq_clean", 32)]
