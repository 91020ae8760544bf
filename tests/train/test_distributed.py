"""notpipe.train.distributed: a run on 2 processes (gloo, CPU, 127.0.0.1) equals one process.

These go through the real launcher (torch.distributed's elastic launch, as torchrun),
the real DDP wrappers and the real checkpoint files.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import REPO, tiny_image_run

from notpipe import train as images
from notpipe.core import checkpoint as ckpt
from notpipe.train import distributed

pytestmark = pytest.mark.slow

WEAK = {"name": "weak", "gamma": 0.5, "z_size": 2}


def _weights(path):
    state = ckpt.load(path)["trainer"]
    return state["T"], state["f"]


def _assert_close(a: dict, b: dict, rtol=1e-5):
    """Every float tensor of ``a`` within ``rtol`` (relative L2) of ``b``; the rest equal."""
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k].double(), b[k].double()
        if x.dtype.is_floating_point and x.numel():
            rel = (x - y).norm() / y.norm().clamp_min(1e-12)
            assert rel <= rtol, f"{k}: relative difference {float(rel):.2e}"
        else:
            assert torch.equal(x, y), k


def _split_unet(state: dict) -> tuple[dict, dict, dict]:
    """T's state as (conv kernels, BatchNorm scales and running variances, the rest).

    In the authors' U-Net a conv bias feeds a BatchNorm, which subtracts the batch mean:
    its exact gradient is 0, and the BatchNorm shift before ReLU -> conv -> BatchNorm
    has an almost-zero one. Backward returns float rounding noise for those, whose sign
    depends on the summation order (one process or two), and Adam turns noise into steps
    of up to lr. So conv kernels and BatchNorm scales are compared at 1e-5, the rest
    (biases, shifts, running means) within Adam's step bound.
    """
    kernels = {k: v for k, v in state.items() if v.dim() == 4}
    scales = {k: v for k, v in state.items() if v.dim() == 1 and (k.endswith(".weight") or k.endswith("running_var"))}
    rest = {k: v for k, v in state.items() if k not in kernels and k not in scales}
    return kernels, scales, rest


def _global_rel(a: dict, b: dict) -> float:
    d = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a)
    n = sum(float(b[k].double().pow(2).sum()) for k in a)
    return (d / n) ** 0.5


@pytest.mark.parametrize("cost", [{"name": "strong"}, WEAK], ids=lambda c: c["name"])
def test_two_processes_equal_one_on_the_same_global_batch(shapes_data, tmp_path, cost):
    # UNet with BatchNorm (synced over the ranks) and the weak cost's z drawn per global batch
    run = tiny_image_run(cost=cost, steps=5, log_every=5, checkpoint_every=5, grid_every=0, snapshot_every=0,
                         batch=8, gpus=2)
    one = tmp_path / "one"
    images.train({**run, "gpus": 1}, "r", shapes_data, one, progress=False)
    res = distributed.launch(run, "r", shapes_data, tmp_path / "two", 2, cuda=False,
                             log_path=str(tmp_path / "two.log"))
    assert sorted(res) == [0, 1] and res[0]["step"] == res[1]["step"] == 5
    assert res[0]["weights_sha256"] == res[1]["weights_sha256"]  # both ranks hold identical weights
    t1, f1 = _weights(one / "final.pt")
    t2, f2 = _weights(tmp_path / "two" / "final.pt")
    # ResNet_D has no BatchNorm, but it learns from T(x) made in eval mode (the authors' freeze):
    # there T's conv biases and BatchNorm running means (Adam-amplified float noise, see
    # _split_unet) no longer cancel exactly, so f sees outputs that differ at ~1e-5 between one
    # process and two, and its weights end within 2e-4 (4.9e-5 measured at 5 f-steps)
    _assert_close(f2, f1, rtol=2e-4)
    (k1, s1, r1), (k2, s2, r2) = _split_unet(t1), _split_unet(t2)
    assert len(k1) >= 10 and len(s1) >= 10
    # every conv kernel of the U-Net, BatchNorm scales and running variances (synced statistics):
    # within 1e-4, as f's float differences above come back through the T loss (1.7e-5 measured)
    assert _global_rel(k2, k1) <= 1e-4
    assert _global_rel(s2, s1) <= 1e-4
    bound = 2 * run["optim"]["lr_t"] * run["steps"] * run["k_t"]
    for k in r1:
        if r1[k].dtype.is_floating_point:
            assert (r2[k] - r1[k]).abs().max() <= bound, k
        else:
            assert torch.equal(r2[k], r1[k]), k  # num_batches_tracked
    log = (tmp_path / "two.log").read_text()
    assert "rank 1 of 2" in log and "rank 0 of 2" in log


def test_dist_batchnorm_is_plain_batchnorm_in_one_process():
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_()
    dbn = distributed.sync_batchnorm(torch.nn.Sequential(bn), cuda=False)[0]
    assert isinstance(dbn, distributed.DistBatchNorm2d) and dbn.weight is bn.weight
    x = torch.randn(4, 3, 5, 5)
    assert torch.allclose(dbn(x), torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True))


def _config(tmp_path, shapes_data, steps):
    run = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
           "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": steps, "batch": 8,
           "k_t": 2, "log_every": 2, "checkpoint_every": 2, "snapshot_every": 0, "grid_every": 0, "keep": 50,
           "gpus": 2}
    cfg = {"suite": "ddp", "results_dir": str(tmp_path / "results"), "data": {"data_dir": str(shapes_data)},
           "images": {"runs": {"r": run}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sigkill_of_one_rank_fails_clearly_and_the_rerun_resumes(shapes_data, tmp_path):
    cfg = _config(tmp_path, shapes_data, steps=400)
    cmd = [sys.executable, str(REPO / "workflow" / "scripts" / "train.py"), "--config", str(cfg), "--run", "r",
           "--cpu"]
    out = tmp_path / "results" / "ddp" / "train" / "r"
    log = tmp_path / "train.log"
    cmd += ["--log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    pid = None
    while time.time() < deadline and pid is None:
        if len(ckpt.list_checkpoints(out / "checkpoints")) >= 2 and log.exists():
            for line in log.read_text().splitlines():
                if "rank 1 of 2: pid" in line:
                    pid = int(line.split("pid ")[1].split(",")[0])
        time.sleep(0.2)
    assert pid, "rank 1 never started or no checkpoint was written"
    os.kill(pid, signal.SIGKILL)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "rank 1 of 2 processes failed (killed by SIGKILL)" in text, text[-3000:]
    assert "Traceback" not in text  # one clear line, not the launcher's traces
    kept = ckpt.list_checkpoints(out / "checkpoints")
    last = int(kept[-1].name[5:13])
    for path in kept:  # every checkpoint under its final name is whole
        ckpt.load(path)
    # the rerun resumes from the newest checkpoint on both ranks and finishes
    _config(tmp_path, shapes_data, steps=last + 4)
    before = log.read_text()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"(f-step {last})" in log.read_text()[len(before):]
    assert ckpt.load(out / "final.pt")["trainer"]["step"] == last + 4
