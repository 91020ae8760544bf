"""notpipe.data.datasets: the registry, config overrides, source resolution and config checks."""

from pathlib import Path

import pytest

from notpipe.config import ConfigError, validate_config
from notpipe.data.datasets import (
    DEFAULT_DATASETS,
    DatasetError,
    file_name,
    resolve_datasets,
    sources,
)
from notpipe.paths import download_relpath


def test_registry_covers_the_papers_data_sets():
    assert {"handbag", "shoes", "outdoor", "church", "celeba_male", "celeba_female", "anime",
            "textures", "cartoon", "mnist", "kmnist", "shapes_circles", "shapes_squares"} <= set(DEFAULT_DATASETS)
    for name, spec in resolve_datasets().items():
        assert spec["pairs"], name
        assert spec["format"] in ("shapes", "torchvision") or spec.get("url") or spec.get("path"), name


def test_config_overrides_and_new_sets():
    ds = resolve_datasets({"shoes": {"path": "/data/shoes_128.zip"},
                           "my_set": {"url": "https://host/x.zip", "format": "image_folder_zip"}})
    assert ds["shoes"]["path"] == "/data/shoes_128.zip" and "url" not in ds["shoes"]
    assert ds["shoes"]["format"] == "igan_hdf5_zip"  # the rest of the default stays
    assert ds["my_set"]["crop"] == "center" and ds["my_set"]["split"] == "tail" and ds["my_set"]["sha256"] is None
    with pytest.raises(DatasetError, match="give 'url'"):
        resolve_datasets({"bad": {"format": "image_folder"}})


def test_sources_resolve_downloads_and_local_paths(tmp_path):
    raw = tmp_path / "raw"
    [s] = sources(resolve_datasets()["shoes"], raw)
    assert s["url"].endswith("shoes_128.zip") and s["path"] == raw / download_relpath(s["url"])
    assert s["path"].name == "shoes_128.zip" and s["path"].parent.parent == raw  # one folder per URL
    celeba = sources(resolve_datasets()["celeba_male"], raw)
    assert [c["path"] for c in celeba] == [raw / "img_align_celeba.zip", raw / "list_attr_celeba.txt"]
    [abs_] = sources({"path": "/abs/x.zip"}, raw)
    assert abs_["path"] == Path("/abs/x.zip")
    assert file_name("https://h/a/b.zip?dl=1") == "b.zip"


def test_config_data_section_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        validate_config({"data": {"build": ["shoe"], "treads": 2},
                         "datasets": {"my": {"url": 3, "format": "zip", "crop": [1, 2]}}})
    msg = str(err.value)
    assert "data: unknown key 'treads' (did you mean 'threads'?)" in msg
    assert "datasets.my.format: 'zip' is not allowed" in msg
    assert "datasets.my.url" in msg and "datasets.my.crop" in msg
    with pytest.raises(ConfigError, match=r"data.build.0: unknown data set 'shoe' \(did you mean 'shoes'\?\)"):
        validate_config({"data": {"build": ["shoe"]}})


def test_data_dir_defaults_under_results_dir():
    cfg = validate_config({"results_dir": "out"})
    assert cfg["data"]["data_dir"] == "out/data" and cfg["data"]["image_size"] == 128
