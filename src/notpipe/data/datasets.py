"""Registry of the papers' data sets and the resolution of config entries.

Every entry says where the data comes from (``url`` to download, or ``path`` of a
local archive/directory when the source cannot be downloaded by a script), its
``format``, optional ``sha256`` (or a published ``md5``), the ``crop`` rule and the domain pairs that use
it, and how it is resized (``resample``, ``stored_size``) and augmented (``augment``,
:mod:`notpipe.data.augment`). The config's ``datasets:`` block adds entries or overrides
fields of these defaults (one level deep), so a new data set needs config only::

    datasets:
      my_set:
        url: https://host/x.zip        # or path: /local/x.zip (or a directory)
        format: image_folder_zip
        sha256: null
        crop: center

Local-only sources default to ``{data_dir}/raw/<file>``; a missing one fails with
one line naming the file to fetch, where from, and where to put it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import urlparse

from notpipe.paths import download_relpath

from notpipe.data.augment import AugmentError, RandomResizedCrop

FORMATS = ("igan_hdf5_zip", "image_folder_zip", "image_folder_tar", "image_folder", "celeba",
           "torchvision", "shapes", "derived", "idx")
#: formats made here, not read from a file: synthetic, torchvision's own download, or another data set
NO_SOURCE_FILE = ("shapes", "torchvision", "derived")
#: resize filters (notpipe.data.prepare.resize_square): PIL bilinear, PIL bicubic, torch F.interpolate
RESAMPLE = ("bilinear", "bicubic", "interpolate")
#: the reserved source name of a generation run (OTM): Gaussian noise, no data set
NOISE_SOURCE = "noise"

_IGAN = "http://efrosgans.eecs.berkeley.edu/iGAN/datasets/{}_128.zip"
#: MNIST (LeCun, Cortes & Burges; the mirror torchvision downloads from first), Fashion-MNIST
#: (Zalando Research), KMNIST (CODH): their standard idx files
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/{}"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{}"
_KMNIST = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/{}"
#: Kernel NOT's textures augmentation: Resize(300), RandomResizedCrop(scale=(128/300, 1), ratio 1), flips
_DTD_AUGMENT = {"name": "random_resized_crop", "resize": 300, "scale": [128 / 300, 1.0], "ratio": [1.0, 1.0],
                "flips": ["h", "v"]}
_CELEBA_NOTE = ("CelebA aligned images and attributes from "
                "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: "
                "Img/img_align_celeba.zip, Anno/list_attr_celeba.txt)")

#: the papers' data sets (docs/datasets.md#sources-and-formats); sizes are of the archives
DEFAULT_DATASETS: dict[str, dict] = {
    # 128-px arrays; at other sizes the authors' loader resizes with F.interpolate (bilinear, no antialias)
    "handbag": {"url": _IGAN.format("handbag"), "format": "igan_hdf5_zip", "size_bytes": 2.8e9,
                "crop": "none", "resample": "interpolate", "pairs": ["handbag->shoes", "shoes->handbag"]},
    "shoes": {"url": _IGAN.format("shoes"), "format": "igan_hdf5_zip", "size_bytes": 9.22e8,
              "crop": "none", "resample": "interpolate",
              "pairs": ["handbag->shoes", "shoes->handbag", "textures->shoes"]},
    "outdoor": {"url": _IGAN.format("outdoor"), "format": "igan_hdf5_zip", "size_bytes": 5.5e9,
                "crop": "none", "resample": "interpolate", "pairs": ["outdoor->church"]},
    "church": {"url": _IGAN.format("church"), "format": "igan_hdf5_zip", "size_bytes": 4.6e9,
               "crop": "none", "resample": "interpolate", "pairs": ["outdoor->church"]},
    # NOT: the whole 178x218 image resized to a square (Resize((s, s)), no crop)
    "celeba": {"path": ["img_align_celeba.zip", "list_attr_celeba.txt"], "format": "celeba", "crop": "none",
               "size_bytes": 1.44e9, "note": _CELEBA_NOTE,
               "pairs": ["noise->celeba", "celeba->cartoon", "celeba (restoration halves)"]},
    "celeba_male": {"path": ["img_align_celeba.zip", "list_attr_celeba.txt"], "format": "celeba",
                    "filter": {"attribute": "Male", "value": 1}, "crop": "none",
                    "size_bytes": 1.44e9, "note": _CELEBA_NOTE, "pairs": ["celeba_male->celeba_female"]},
    "celeba_female": {"path": ["img_align_celeba.zip", "list_attr_celeba.txt"], "format": "celeba",
                      "filter": {"attribute": "Male", "value": -1}, "crop": "none",
                      "size_bytes": 1.44e9, "note": _CELEBA_NOTE,
                      "pairs": ["celeba_male->celeba_female", "anime->celeba_female"]},
    # torchvision's CenterCrop(140) of the 178x218 image: top round(78 / 2), left round(38 / 2)
    "celeba_crop140": {"path": ["img_align_celeba.zip", "list_attr_celeba.txt"], "format": "celeba",
                       "crop": [39, 19, 140, 140], "size_bytes": 1.44e9, "note": _CELEBA_NOTE,
                       "pairs": ["a 140-px centre crop (OTM's CelebA)"]},
    # authors' preprocess: Pillow's default (bicubic) resizes to 512 and 128; their loader then Resize((s, s))
    "anime": {"path": "anime_faces.zip", "format": "image_folder_zip", "pre_resize": 512,
              "crop": [114, 128, 256, 256], "resample": "bicubic", "stored_size": 128, "size_bytes": 1.05e11,
              "note": ("aligned anime faces (Kaggle 'another anime face dataset' at 512 px); "
                       "authors' crop: resize 512, 256-px box offset (0, -14), resize"),
              "pairs": ["anime->celeba_female"]},
    # Kernel NOT: shuffled with numpy seed 0 before the 10 % tail; a fresh augmentation per draw
    "textures": {"url": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
                 "format": "image_folder_tar", "crop": "center", "size_bytes": 6.25e8,
                 "split": "random", "split_seed": 0, "augment": _DTD_AUGMENT, "pairs": ["textures->shoes"]},
    "cartoon": {"path": "cartoonset100k.tgz", "format": "image_folder_tar", "crop": "center",
                "size_bytes": 4.5e9, "pairs": ["celeba->cartoon"],
                "note": "CartoonSet100K from https://google.github.io/cartoonset/download.html"},
    # the LeCun idx files read natively, train file then test file (split: files, the canonical
    # 60,000 / 10,000); content_sha256: of the decompressed files (mirrors' gzip containers differ)
    "mnist": {"url": [_MNIST.format("train-images-idx3-ubyte.gz"), _MNIST.format("t10k-images-idx3-ubyte.gz")],
              "format": "idx", "split": "files", "crop": "none", "size_bytes": 1.1e7,
              "content_sha256": ["ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"],
              "pairs": ["mnist->kmnist", "mnist->fashion_mnist", "fashion_mnist->mnist"]},
    "fashion_mnist": {"url": [_FASHION.format("train-images-idx3-ubyte.gz"),
                              _FASHION.format("t10k-images-idx3-ubyte.gz")],
                      "format": "idx", "split": "files", "crop": "none", "size_bytes": 3.1e7,
                      "content_sha256": ["c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                                         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"],
                      "pairs": ["mnist->fashion_mnist", "fashion_mnist->mnist"]},
    # no sha256 is published for KMNIST's files (their sha256 is recorded in checksums.json on first
    # download); md5: of the gzip files from CODH, as pinned by torchvision.datasets.KMNIST.resources,
    # checked first. MD5 catches a corrupt or changed file, not a deliberately forged collision.
    "kmnist": {"url": [_KMNIST.format("train-images-idx3-ubyte.gz"), _KMNIST.format("t10k-images-idx3-ubyte.gz")],
               "format": "idx", "split": "files", "crop": "none", "size_bytes": 2.1e7,
               "md5": ["bdb82020997e1d708af4cf47b453dcf7", "5c965bf0a639b31b8f53240b1b52f4d7"],
               "pairs": ["mnist->kmnist"]},
    "shapes_circles": {"format": "shapes", "shape": "circle", "n": 6000, "seed": 0, "crop": "none",
                       "pairs": ["shapes_circles->shapes_squares"]},
    "shapes_squares": {"format": "shapes", "shape": "square", "n": 6000, "seed": 1, "crop": "none",
                       "pairs": ["shapes_circles->shapes_squares"]},
}

DATASET_DEFAULTS = {"sha256": None, "crop": "center", "pre_resize": None, "split": "tail",
                    "test_fraction": 0.1, "split_seed": 0, "limit": None, "hdf5_key": "imgs",
                    "note": None, "pairs": []}


class DatasetError(ValueError):
    """A data set entry is incomplete or its local source is missing."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def _listify(v) -> list:
    return [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]


def resolve_datasets(user: dict | None = None) -> dict[str, dict]:
    """Built-in registry updated with the config's ``datasets`` block (one level deep)."""
    out = copy.deepcopy(DEFAULT_DATASETS)
    for name, spec in (user or {}).items():
        base = out.get(name, {})
        if "url" in spec or "path" in spec:  # a new source replaces both source keys
            base = {k: v for k, v in base.items() if k not in ("url", "path", "sha256", "md5")}
        out[name] = {**base, **copy.deepcopy(spec)}
    for name, spec in out.items():
        for k, v in DATASET_DEFAULTS.items():
            spec.setdefault(k, copy.deepcopy(v))
        fmt = spec.get("format")
        if fmt not in FORMATS:
            raise DatasetError(f"datasets.{name}.format: {fmt!r} is not allowed; allowed values: "
                               f"{', '.join(FORMATS)}")
        if fmt not in NO_SOURCE_FILE and not (spec.get("url") or spec.get("path")):
            raise DatasetError(f"datasets.{name}: give 'url' (to download) or 'path' (local file)")
        if name == NOISE_SOURCE:
            raise DatasetError(f"datasets.{name}: '{NOISE_SOURCE}' is the generation source (images.runs.*.source: "
                               f"{NOISE_SOURCE}), not a data set name")
        if spec.get("augment"):
            try:
                RandomResizedCrop.from_spec(spec["augment"], f"datasets.{name}.augment")
            except AugmentError as err:
                raise DatasetError(str(err)) from None
        if spec.get("split") == "files" and fmt != "idx":
            raise DatasetError(f"datasets.{name}.split: files (the source's own train and test files) needs "
                               f"format idx; use tail or random")
        if spec.get("resample", "bilinear") not in RESAMPLE:
            raise DatasetError(f"datasets.{name}.resample: {spec['resample']!r} is not allowed; allowed values: "
                               f"{', '.join(RESAMPLE)}")
        if fmt == "derived":
            base = spec.get("base")
            if base not in out or out[base].get("format") == "derived":
                known = sorted(n for n, s in out.items() if s.get("format") != "derived")
                raise DatasetError(f"datasets.{name}.base: {base!r} is not a data set to derive from; "
                                   f"known: {', '.join(known)}")
    return out


def data_sides(run: dict) -> dict[str, str]:
    """``{side: data set}`` of an image run block: a generation run (source noise) has the target only."""
    return {side: run[side] for side in ("source", "target") if run[side] != NOISE_SOURCE}


def base_of(spec: dict) -> str | None:
    """The data set a derived data set is made from (None for the others)."""
    return spec.get("base") if spec.get("format") == "derived" else None


#: data set formats made here rather than read from real images
GENERATED_FORMATS = ("shapes",)


def generated_datasets(datasets: dict[str, dict] | None = None) -> list[str]:
    """Names of the data sets that are generated, not real images: format ``shapes``, or derived
    from such a set. ``datasets``: the resolved registry (default: the built-in one)."""
    datasets = DEFAULT_DATASETS if datasets is None else datasets

    def generated(name: str) -> bool:
        spec = datasets.get(name, {})
        base = base_of(spec)
        return generated(base) if base in datasets else spec.get("format") in GENERATED_FORMATS

    return sorted(n for n in datasets if generated(n))


def file_name(source: str) -> str:
    """File name of a URL or path (query strings dropped)."""
    return Path(urlparse(source).path).name or "download"


def sources(spec: dict, raw_dir: str | Path) -> list[dict]:
    """The input files of one data set: ``[{url, path, sha256, md5}]`` (None where not pinned).

    Downloads go to ``raw_dir/<key>/<file name>`` (one folder per URL:
    :func:`notpipe.paths.download_relpath`); relative local paths are taken
    inside ``raw_dir`` (absolute ones and ``~`` as given).
    """
    raw_dir = Path(raw_dir)
    shas, md5s = _listify(spec.get("sha256")), _listify(spec.get("md5"))
    out = []
    if spec.get("path"):
        for i, p in enumerate(_listify(spec["path"])):
            path = Path(str(p)).expanduser()
            out.append({"url": None, "path": path if path.is_absolute() else raw_dir / path,
                        "sha256": shas[i] if i < len(shas) else None, "md5": md5s[i] if i < len(md5s) else None})
    else:
        for i, u in enumerate(_listify(spec.get("url"))):
            out.append({"url": u, "path": raw_dir / download_relpath(u),
                        "sha256": shas[i] if i < len(shas) else None, "md5": md5s[i] if i < len(md5s) else None})
    return out


def missing_local_message(name: str, spec: dict, path: Path) -> str:
    where = spec.get("note") or "the data set's home page"
    return (f"data set '{name}': {path} not found. Fetch '{path.name}' ({where}) and put it at "
            f"{path} (or set datasets.{name}.path in the config)")


def dataset_dir(data_dir: str | Path, name: str, size: int) -> Path:
    return Path(data_dir) / f"{name}_{size}"
