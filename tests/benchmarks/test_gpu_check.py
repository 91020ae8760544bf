"""benchmarks/gpu_check.sh: one table on a GPU; its CPU smoke mode; one line where there is no GPU."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
MEASURED = ["reference fp32", "reference TF32", "ours fp32", "ours TF32", "ours bf16 autocast"]


def run(*args, cuda_visible=None, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    if cuda_visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in line[2:-2].split(" | ")]


@pytest.mark.slow
def test_cpu_smoke_prints_one_table_with_every_row(tmp_path):
    out = tmp_path / "check.json"
    proc = run("--cpu-smoke", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert all(ln.startswith("|") for ln in lines), proc.stdout  # stdout is the table and nothing else
    head = cells(lines[0])
    assert head == ["part", "row", "img/s", "peak MiB", "vs ref TF32", "T loss @ 1/2/4", "f loss @ 1/2/4",
                    "smoke FID"]
    assert lines[1] == "|" + "---|" * 8
    rows = [cells(ln) for ln in lines[2:]]
    assert all(len(r) == 8 for r in rows), rows
    by = {(r[0], r[1]): r for r in rows}
    assert rows[0][0] == "device" and rows[0][1].startswith("CPU") and "--cpu-smoke" in rows[0][1]
    assert rows[1][0] == "sizes" and rows[1][1].startswith("16 px, batch 4, K_T 2")

    data = json.loads(out.read_text())
    speed = {r["name"]: r for r in data["speed"]}
    for name in MEASURED:
        r = by["speed", name]
        assert float(r[2]) == pytest.approx(speed[name]["images_per_s"], abs=0.051)  # printed with .1f
        assert float(r[2]) > 0 and float(r[3].split()[0]) > 0, r
        assert r[4].endswith("x")
    assert by["speed", "reference TF32"][4] == "1.00x"
    assert by["speed", "ours bf16 autocast + compile"][2].startswith("skipped: not in --cpu-smoke")

    ab = data["ab"]
    for key, label in (("fp32", "ours fp32, 4 f-steps"), ("bf16", "ours bf16 autocast, 4 f-steps")):
        r = by["A/B", label]
        losses = ab[key]["loss_t"]
        assert len(losses) == 4 and [float(v) for v in r[5].split(" / ")] == pytest.approx(
            [losses[0], losses[1], losses[3]], rel=1e-3, abs=1e-4)
        assert len(r[6].split(" / ")) == 3
        assert math.isfinite(float(r[7])) and float(r[7]) == pytest.approx(ab[key]["fid"], abs=0.01)
    diff = by["A/B", "max abs diff bf16 - fp32, all steps"]
    t_diff = max(abs(a - b) for a, b in zip(ab["bf16"]["loss_t"], ab["fp32"]["loss_t"]))
    assert float(diff[5]) == pytest.approx(t_diff, rel=1e-2)
    assert t_diff > 0  # bf16 autocast really ran (CPU autocast in the smoke mode)


def test_without_a_gpu_it_prints_one_line_and_measures_nothing(tmp_path):
    proc = run(cuda_visible="", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("gpu_check: no CUDA GPU visible")
    assert "--cpu-smoke" in proc.stdout
    assert "timing" not in proc.stderr and "reference" not in proc.stderr
