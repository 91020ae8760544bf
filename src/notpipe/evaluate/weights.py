"""The FID Inception and LPIPS backbone weight files: names, URLs, which ones a config needs, download.

This module is the one place that names the files and their URLs (``fid.py``
and ``lpips.py`` import them from here). It imports neither torch nor clean-fid,
so the Snakefile can read it when it parses (``tests/evaluate/test_weights.py``
checks the URLs against the installed clean-fid and torchvision):

* ``legacy_pytorch`` (the papers' protocol): pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth``;
* ``clean``: clean-fid's torchscript ``inception-2015-12-05.pt``;
* the torchvision ImageNet trunk of lpips' ``alex`` / ``vgg`` / ``squeeze``.

:func:`required` says which files an ``eval`` config block needs and where
they are read from. A configured path (``eval.inception_weights`` /
``eval.lpips_weights``: a file, or a folder holding the file) that is not the
default ``{results_dir}/weights`` is used as it is. Random weights need no file.
:func:`fetch_weights` is rule ``weights``' download: ``notpipe.data.download.fetch``
(resumable, retried, sha256 recorded in a checksums file) plus the check that
the file's sha256 starts with the hex suffix of its torch.hub name.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LEGACY_FILE = "pt_inception-2015-12-05-6726825d.pth"
LEGACY_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{LEGACY_FILE}"
CLEAN_FILE = "inception-2015-12-05.pt"
CLEAN_URL = f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{CLEAN_FILE}"
#: eval.feature_extractor -> URL of its Inception weights (random: none)
FID_URLS = {"legacy_pytorch": LEGACY_URL, "clean": CLEAN_URL}
#: eval.lpips_net -> URL of the torchvision ImageNet weights of its trunk (torchvision's
#: AlexNet_Weights / VGG16_Weights / SqueezeNet1_1_Weights.IMAGENET1K_V1)
LPIPS_URLS = {"alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
              "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
              "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"}

#: torch.hub's convention: ``name-<first hex digits of the sha256>.ext``
_HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def file_name(url: str) -> str:
    """The file name a URL is saved as (its last path component, as torch.hub does)."""
    return url.rsplit("/", 1)[-1]


#: every weight file the pipeline knows: file name -> URL
KNOWN = {file_name(u): u for u in (*FID_URLS.values(), *LPIPS_URLS.values())}


def hash_prefix(name: str) -> str | None:
    """The sha256 prefix in a torch.hub file name (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    m = _HUB_HASH.search(name)
    return m[1] if m else None


def resolve(configured: str | Path, name: str) -> Path:
    """Path of weight file ``name`` under a configured file or folder (``eval.*_weights``).

    A folder -- existing, or a path without a suffix such as the default
    ``results/weights`` not yet made -- holds ``name``; anything else is the file itself.
    """
    path = Path(configured).expanduser()
    if path.is_dir() or (not path.exists() and not path.suffix and path.name != name):
        return path / name
    return path


@dataclass(frozen=True)
class Weight:
    """One weight file an evaluation needs."""

    key: str        # config key: inception_weights or lpips_weights
    file: str       # its file name (torch.hub's)
    url: str
    path: str       # where the evaluation reads it (a rule input)
    download: bool  # True: path is {weights_dir}/{file}, made by rule ``weights``


def required(ev: dict, weights_dir: str | Path) -> dict[str, Weight]:
    """``{"fid": Weight, "lpips": Weight}`` for the files a validated ``eval`` block needs.

    ``weights_dir``: the default folder (``Layout.weights``). A use with random
    weights (``feature_extractor: random``, ``lpips_backbone: random``) is left out.
    """
    out = {}
    uses = [("fid", "inception_weights", FID_URLS.get(ev["feature_extractor"])),
            ("lpips", "lpips_weights", None if ev["lpips_backbone"] == "random" else LPIPS_URLS[ev["lpips_net"]])]
    for use, key, url in uses:
        if url is None:
            continue
        name, default = file_name(url), Path(weights_dir) / file_name(url)
        configured = ev.get(key)
        path = default if configured is None else resolve(configured, name)
        download = os.path.abspath(path) == os.path.abspath(default)
        out[use] = Weight(key, name, url, str(default if download else path), download)
    return out


def fetch_weights(url: str, dest: str | Path, *, checksums: str | Path | None = None,
                  offline: bool = False, retries: int = 5, **kw) -> Path:
    """Download weight file ``url`` to ``dest`` and check it; return ``dest`` (absolute).

    ``notpipe.data.download.fetch`` does the download (``kw``: its ``backoff``,
    ``timeout``, ``progress``, ``chunk_size``). When ``dest``'s name carries a
    torch.hub hash suffix, the file's sha256 must start with it; otherwise it is
    kept aside as ``dest.bad`` and :class:`~notpipe.data.download.DownloadError`
    names the URL, the path and both prefixes. With ``offline`` a missing
    ``dest`` is an error naming the URL and the full path to save it at.
    """
    from notpipe.data.download import fetch

    dest = Path(dest).absolute()
    prefix = hash_prefix(dest.name)
    out = fetch(url, dest, checksums=checksums, offline=offline, retries=retries,
                sha256_prefix=prefix, **kw)
    if prefix:
        log.info("%s: sha256 starts with %s, as its torch.hub name says", dest.name, prefix)
    return out
