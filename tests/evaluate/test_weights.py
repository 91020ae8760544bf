"""Weight files as a rule: notpipe.evaluate.weights against a real HTTP server on 127.0.0.1
(download, torch.hub hash-prefix check, mismatch kept aside, resume, offline), which files a
config needs, and the Snakemake plan (rule ``weights`` before the evaluation jobs)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from snakemake_runner import REPO, run_snakemake

from notpipe.data.download import DownloadError
from notpipe.evaluate import weights as W
from notpipe.paths import Layout

FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False, "chunk_size": 16 << 10}


def _state_dict_bytes(seed: int = 0) -> bytes:
    g = torch.Generator().manual_seed(seed)
    sd = {"conv.weight": torch.randn(32, 3, 3, 3, generator=g), "conv.bias": torch.randn(32, generator=g),
          "fc.weight": torch.randn(64, 512, generator=g)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


BLOB = _state_dict_bytes()
SHA = hashlib.sha256(BLOB).hexdigest()
#: a torch.hub-style name whose suffix is this file's own sha256 prefix
NAME = f"pt_inception-2015-12-05-{SHA[:8]}.pth"


@pytest.fixture
def server(http_server):
    http_server.files[f"/fid_weights/{NAME}"] = (BLOB, "application/octet-stream")
    http_server.files[f"/fid_weights/{W.LEGACY_FILE}"] = (BLOB, "application/octet-stream")  # real name
    return http_server


def test_download_verifies_hash_prefix_and_records_sha(server, tmp_path):
    dest, sums = tmp_path / "weights" / NAME, tmp_path / "weights" / "checksums.json"
    out = W.fetch_weights(server.url(f"/fid_weights/{NAME}"), dest, checksums=sums, **FAST)
    assert out == dest and dest.read_bytes() == BLOB
    assert W.hash_prefix(NAME) == SHA[:8]
    assert json.loads(sums.read_text()) == {NAME: SHA}
    assert not (tmp_path / "weights" / f"{NAME}.part").exists()
    sd = torch.load(dest, weights_only=True)
    assert set(sd) == {"conv.weight", "conv.bias", "fc.weight"}
    # present: verified again without the network
    n = len(server.requests)
    assert W.fetch_weights(server.url(f"/fid_weights/{NAME}"), dest, checksums=sums, **FAST) == dest
    assert len(server.requests) == n


def test_prefix_mismatch_is_kept_aside(server, tmp_path):
    url, dest = server.url(f"/fid_weights/{W.LEGACY_FILE}"), tmp_path / W.LEGACY_FILE
    with pytest.raises(DownloadError) as exc:
        W.fetch_weights(url, dest, checksums=tmp_path / "c.json", **FAST)
    msg = str(exc.value)
    bad = tmp_path / f"{W.LEGACY_FILE}.bad"
    assert "\n" not in msg and url in msg and str(dest) in msg and str(bad) in msg
    assert re.search(rf"expected 6726825d, got {SHA[:8]}\b", msg), msg
    assert bad.read_bytes() == BLOB and not dest.exists()
    assert not (tmp_path / "c.json").exists()  # a rejected file's sha256 is never recorded


def test_dropped_connection_resumes(server, tmp_path):
    path = f"/fid_weights/{NAME}"
    server.drop_once.add(path)
    dest = tmp_path / NAME
    W.fetch_weights(server.url(path), dest, **FAST)
    assert dest.read_bytes() == BLOB
    ranges = server.ranges()
    assert len(ranges) == 2 and ranges[0] is None
    start = int(re.fullmatch(r"bytes=(\d+)-", ranges[1])[1])
    assert 0 < start < len(BLOB)  # resumed from the .part file, not restarted


def test_offline_names_url_and_full_path(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = server.url(f"/fid_weights/{NAME}")
    with pytest.raises(DownloadError) as exc:
        W.fetch_weights(url, f"results/weights/{NAME}", offline=True, **FAST)
    msg = str(exc.value)
    assert "\n" not in msg and url in msg and str(tmp_path / "results" / "weights" / NAME) in msg
    assert server.requests == []


def test_no_hash_suffix_records_sha_only(server, tmp_path):
    server.files[f"/m/{W.CLEAN_FILE}"] = (BLOB, "application/octet-stream")
    assert W.hash_prefix(W.CLEAN_FILE) is None  # "-05." is a date, not a hash
    dest, sums = tmp_path / W.CLEAN_FILE, tmp_path / "c.json"
    W.fetch_weights(server.url(f"/m/{W.CLEAN_FILE}"), dest, checksums=sums, **FAST)
    assert json.loads(sums.read_text()) == {W.CLEAN_FILE: SHA}


def test_cli_prints_progress_and_result(server, tmp_path):
    dest = tmp_path / "w" / NAME
    proc = subprocess.run([sys.executable, str(REPO / "workflow/scripts/weights_download.py"),
                           server.url(f"/fid_weights/{NAME}"), str(dest), "--checksums", str(tmp_path / "c.json")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert dest.read_bytes() == BLOB
    assert f"downloaded {dest}" in proc.stderr and f"{NAME}: sha256 starts with {SHA[:8]}, as pinned" in proc.stderr


def test_names_and_urls_match_the_libraries():
    import cleanfid.downloads_helper as cf_dl
    import cleanfid.inception_pytorch as cf_incep
    import torchvision

    from notpipe.evaluate import fid, lpips

    assert W.LEGACY_URL == cf_incep.FID_WEIGHTS_URL and W.CLEAN_URL == cf_dl.inception_url
    tv = {"alex": torchvision.models.AlexNet_Weights, "vgg": torchvision.models.VGG16_Weights,
          "squeeze": torchvision.models.SqueezeNet1_1_Weights}
    assert W.LPIPS_URLS == {net: e.IMAGENET1K_V1.url for net, e in tv.items()}
    assert (fid.LEGACY_FILE, fid.CLEAN_FILE) == (W.LEGACY_FILE, W.CLEAN_FILE)
    assert lpips.backbone_file("alex") == ("alexnet-owt-7be5be79.pth", W.LPIPS_URLS["alex"])
    for url in W.KNOWN.values():  # every torch.hub name carries its 8-hex sha256 prefix
        name = W.file_name(url)
        assert name == W.CLEAN_FILE or re.fullmatch(r"[0-9a-f]{8}", W.hash_prefix(name) or ""), name


def test_missing_weights_message_names_the_file_not_the_folder(tmp_path):
    from notpipe.evaluate import fid

    folder = tmp_path / "results" / "weights"  # the default folder, not made yet
    with pytest.raises(fid.MissingWeightsError) as exc:
        fid.weights_file("legacy_pytorch", folder, W.LEGACY_FILE, W.LEGACY_URL)
    msg = str(exc.value)
    assert msg.endswith(f"save it as {folder / W.LEGACY_FILE}") and W.LEGACY_URL in msg


def _ev(**over):
    ev = {"feature_extractor": "legacy_pytorch", "lpips_backbone": "pretrained", "lpips_net": "alex",
          "inception_weights": "results/weights", "lpips_weights": "results/weights"}
    return ev | over


def test_required_follows_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results/weights: this test's, not the checkout's
    lay = Layout("results")
    need = W.required(_ev(), lay.weights)
    assert {u: (w.path, w.download) for u, w in need.items()} == {
        "fid": (lay.weights_file(W.LEGACY_FILE), True), "lpips": (lay.weights_file("alexnet-owt-7be5be79.pth"), True)}
    assert W.required(_ev(feature_extractor="random", lpips_backbone="random"), lay.weights) == {}
    assert set(W.required(_ev(feature_extractor="clean", lpips_backbone="random"), lay.weights)) == {"fid"}
    assert W.required(_ev(feature_extractor="clean"), lay.weights)["fid"].file == W.CLEAN_FILE
    assert W.required(_ev(lpips_net="vgg"), lay.weights)["lpips"].file == "vgg16-397923af.pth"
    # user paths are used as they are: a file, or a folder holding the file
    own = tmp_path / "my_inception.pth"
    need = W.required(_ev(inception_weights=str(own), lpips_weights=str(tmp_path)), lay.weights)
    assert (need["fid"].path, need["fid"].download) == (str(own), False)
    assert (need["lpips"].path, need["lpips"].download) == (str(tmp_path / "alexnet-owt-7be5be79.pth"), False)


RUN = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
       "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": 4, "batch": 4, "k_t": 2,
       "log_every": 2, "checkpoint_every": 2, "grid_every": 4}


@pytest.mark.parametrize("case", ["legacy_pytorch", "random", "user_paths"])
def test_dry_run_plans_weights_job_only_when_needed(case, tmp_path):
    ev = {"feature_extractor": "legacy_pytorch" if case != "random" else "random",
          "lpips_backbone": "pretrained" if case != "random" else "random"}
    if case == "user_paths":
        (tmp_path / "own").mkdir()
        for name in (W.LEGACY_FILE, "alexnet-owt-7be5be79.pth"):
            (tmp_path / "own" / name).write_bytes(BLOB)
        ev |= {"inception_weights": str(tmp_path / "own"),
               "lpips_weights": str(tmp_path / "own" / "alexnet-owt-7be5be79.pth")}
    cfg = {"images": {"runs": {"tiny": RUN}}, "eval": ev,
           "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake("-n", "--cores", "1", "--configfile", str(tmp_path / "c.yaml"), "--directory",
                         str(tmp_path), "results/main/eval/tiny/steps/step_00000004.csv")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.MULTILINE))
    assert jobs.get("eval_snapshot") == "1" and jobs.get("eval_reference") == "1", proc.stdout
    if case == "legacy_pytorch":
        assert jobs.get("weights") == "2"  # the Inception and the AlexNet trunk
        for name in (W.LEGACY_FILE, "alexnet-owt-7be5be79.pth"):
            assert f"output: results/weights/{name}" in proc.stdout
    else:
        assert "weights" not in jobs
    if case == "user_paths":  # the configured files are the evaluation's inputs
        assert str(tmp_path / "own" / W.LEGACY_FILE) in proc.stdout


def test_every_known_file_is_pinned_from_what_its_publisher_states():
    """torch.hub names carry their sha256 prefix; lpips' heads are pinned in full, as the wheel's
    RECORD states; clean-fid publishes no hash for its TorchScript (and it is the only code)."""
    import base64
    from importlib.metadata import distribution

    assert set(W.KNOWN) | {f"lpips-v0.1-{n}.pth" for n in W.LPIPS_HEADS} | {W.PACKAGE_FILE} == set(W.PINNED)
    # the file converted from the pinned wheel (test_inception_wheel.py): full sha256, its prefix in the name
    assert len(W.PINNED[W.PACKAGE_FILE]) == 64 and W.PINNED[W.PACKAGE_FILE].startswith(W.hash_prefix(W.PACKAGE_FILE))
    for name in W.KNOWN:
        assert W.PINNED[name] == W.hash_prefix(name) or (name == W.CLEAN_FILE and W.PINNED[name] is None)
    assert W.CODE == {W.CLEAN_FILE}
    record = {}
    for f in distribution("lpips").files:
        if f.hash and str(f).startswith("lpips/weights/v0.1/"):
            record[Path(str(f)).stem] = base64.urlsafe_b64decode(f.hash.value + "=").hex()
    assert record == W.LPIPS_HEADS


def test_check_refuses_unpinned_code_and_mismatched_files_before_loading(tmp_path, caplog):
    clean, legacy = tmp_path / W.CLEAN_FILE, tmp_path / "mine.pth"
    clean.write_bytes(b"PK anything")
    legacy.write_bytes(BLOB)
    with pytest.raises(W.WeightsError) as e:
        W.check(clean, W.CLEAN_FILE)
    msg = str(e.value)
    assert msg.startswith(f"{clean}: ") and "runs code" in msg and W.ALLOW_KEY in msg and "\n" not in msg
    with pytest.raises(W.WeightsError, match=f"sha256 {SHA[:16]}... is not the published {W.LEGACY_FILE}"):
        W.check(legacy, W.LEGACY_FILE)  # a configured path is checked as the file it stands for
    with pytest.raises(W.WeightsError, match="not a regular file"):
        W.check(tmp_path, W.LEGACY_FILE)
    with caplog.at_level("WARNING"):
        assert W.check(legacy, W.LEGACY_FILE, allow_unpinned=True) == SHA
    assert f"{legacy}: loading a weight file that is not pinned (sha256 {SHA})" in caplog.text
