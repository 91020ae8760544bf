"""LPIPS diversity and content metrics (lpips 0.1.4), offline.

``lpips.LPIPS`` ships its linear heads in the wheel but builds its AlexNet /
VGG / SqueezeNet trunk with ``torchvision.models.<net>(pretrained=True)``,
which downloads. :func:`build_lpips` always constructs it with
``pnet_rand=True`` and ``pretrained=False`` (no download, nothing loaded), then
loads the linear heads from the wheel's ``weights/v0.1/<net>.pth`` as lpips does
and copies the torchvision weights from a local file into the trunk slices, or
-- for CPU smoke runs -- draws seeded random trunk weights (``lp.smoke = True``).
Both files are checked against their pinned sha256
(:func:`notpipe.evaluate.weights.check`) and loaded with ``weights_only=True``.

Inputs everywhere are float tensors NCHW in [-1, 1] (what LPIPS expects);
grey images are replicated to 3 channels.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import lpips
import torch

from notpipe.evaluate.fid import MissingWeightsError, weights_file  # noqa: F401  (re-exported)
from notpipe.evaluate.weights import LPIPS_URLS, check, file_name


def backbone_file(net: str) -> tuple[str, str]:
    """``(file name, URL)`` of the torchvision ImageNet weights lpips' ``net`` uses
    (``notpipe.evaluate.weights.LPIPS_URLS``)."""
    url = LPIPS_URLS[net]
    return file_name(url), url


def heads_file(net: str) -> Path:
    """lpips' linear heads of ``net`` (v0.1) in the installed wheel."""
    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


def build_lpips(net: str = "alex", backbone_weights: str | Path | None = None, device="cpu",
                random_smoke: bool = False, seed: int = 0, allow_unpinned: bool = False) -> lpips.LPIPS:
    """An eval-mode ``lpips.LPIPS`` (v0.1) that never touches the network.

    Parameters
    ----------
    net : {"alex", "vgg", "squeeze"}
    backbone_weights : path or None
        torchvision state-dict file of the trunk (e.g. ``alexnet-owt-7be5be79.pth``)
        or its folder. Ignored when ``random_smoke``.
    device : str or torch.device
    random_smoke : bool
        Seeded random trunk instead (``lp.smoke`` is True); linear heads stay the
        wheel's.
    seed : int
    allow_unpinned : bool
        Load weight files whose sha256 is not the pinned one (config
        ``eval.allow_unpinned_code_weights``).

    Raises
    ------
    MissingWeightsError
        Weights absent and not ``random_smoke`` (one line: URL and target path).
    WeightsError
        A file is not the pinned one (one line).
    """
    if net not in LPIPS_URLS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(LPIPS_URLS)}")
    name, url = backbone_file(net)
    path = None if random_smoke else weights_file(f"LPIPS {net} backbone", backbone_weights, name, url)
    if path is not None:
        check(path, name, allow_unpinned)
    heads = heads_file(net)
    check(heads, f"lpips-v0.1-{net}.pth", allow_unpinned)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation
        lp = lpips.LPIPS(pretrained=False, net=net, version="0.1", pnet_rand=True, verbose=False)
    # the heads, as lpips.LPIPS(pretrained=True) loads them (strict=False: the file holds only lin*)
    res = lp.load_state_dict(torch.load(heads, map_location="cpu", weights_only=True), strict=False)
    if res.unexpected_keys or any(re.match(r"lin\d", k) for k in res.missing_keys):  # lins.i: the same
        raise ValueError(f"{heads} does not hold lpips' {net} heads; reinstall lpips==0.1.4")
    trunk = lp.net
    if path is None:
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for m in trunk.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
                    torch.nn.init.zeros_(m.bias)
    else:
        # torchvision key "features.{i}.{p}" -> lpips trunk key "slice{k}.{i}.{p}" (same index i)
        src = torch.load(path, map_location="cpu", weights_only=True)
        mapped = {}
        for key in trunk.state_dict():
            _, idx, rest = key.split(".", 2)
            if f"features.{idx}.{rest}" not in src:
                raise ValueError(f"{path} is not a torchvision {net} state dict (no features.{idx}.{rest})")
            mapped[key] = src[f"features.{idx}.{rest}"]
        trunk.load_state_dict(mapped, strict=True)
    lp.pnet_rand = lp.smoke = path is None
    lp.backbone_weights = path
    for p in lp.parameters():
        p.requires_grad_(False)
    return lp.eval().to(device)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _device(lp: torch.nn.Module) -> torch.device:
    return next(lp.parameters()).device


@torch.no_grad()
def _pair_lpips(a: torch.Tensor, b: torch.Tensor, lp, batch_size: int) -> torch.Tensor:
    """Per-pair LPIPS of two aligned (P, C, H, W) stacks, in chunks; float64 (P,)."""
    dev, out = _device(lp), []
    for i in range(0, len(a), batch_size):
        d = lp(_rgb(a[i:i + batch_size].to(dev).float()), _rgb(b[i:i + batch_size].to(dev).float()))
        out.append(d.reshape(-1).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def lpips_diversity(sample_fn: Callable[[torch.Tensor, int], torch.Tensor], inputs: torch.Tensor,
                    n_samples: int = 20, lp=None, batch_size: int = 50, input_batch: int = 10) -> float:
    """Mean LPIPS between consecutive samples of a stochastic map (BicycleGAN / NOT).

    For each input ``x`` draw ``M = n_samples`` outputs with ``sample_fn(x_batch, M)``
    -> (B, M, C, H, W) and average ``LPIPS(out_j, out_{j+1})`` over j < M - 1 and
    all inputs. A deterministic map scores 0.

    Parameters
    ----------
    sample_fn : callable
        ``(x_batch (B, C, H, W), M) -> (B, M, C, H, W)`` in [-1, 1].
    inputs : torch.Tensor
        (N, C, H, W) source images (the papers: N = 100, M = 20).
    n_samples : int
    lp : lpips.LPIPS
        From :func:`build_lpips` (required).
    batch_size : int
        Image pairs per LPIPS call.
    input_batch : int
        Inputs per ``sample_fn`` call (bounds memory: input_batch x M images).
    """
    if lp is None:
        raise TypeError("lpips_diversity needs lp=build_lpips(...)")
    if n_samples < 2:
        raise ValueError("need n_samples >= 2 for consecutive pairs")
    total, count = 0.0, 0
    for i in range(0, len(inputs), input_batch):
        x = inputs[i:i + input_batch]
        out = sample_fn(x, n_samples)
        if out.shape[:2] != (len(x), n_samples):
            raise ValueError(f"sample_fn returned {tuple(out.shape)}, expected ({len(x)}, {n_samples}, C, H, W)")
        a, b = out[:, :-1].flatten(0, 1), out[:, 1:].flatten(0, 1)
        d = _pair_lpips(a, b, lp, batch_size)
        total, count = total + float(d.sum()), count + len(d)
    return total / count


@torch.no_grad()
def lpips_content(inputs: torch.Tensor, outputs: torch.Tensor, lp, batch_size: int = 50) -> float:
    """Mean ``LPIPS(input_i, output_i)``: content preservation of a map (0 for identity)."""
    if inputs.shape != outputs.shape:
        raise ValueError(f"shape mismatch {tuple(inputs.shape)} vs {tuple(outputs.shape)}")
    return float(_pair_lpips(inputs, outputs, lp, batch_size).mean())
