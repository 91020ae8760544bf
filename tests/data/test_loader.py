"""notpipe.data.loader: random batches from a prepared memmap, as the trainer's sampler."""

import json

import numpy as np
import pytest
import torch

from notpipe.data.loader import ImageSampler, load_split, to_float, to_uint8


@pytest.fixture
def prepared(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "train.npy", arr)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"train": "train.npy"}}))
    return tmp_path, arr


def test_batches_are_float_nchw_in_range_and_match_the_array(prepared):
    d, arr = prepared
    split = load_split(d)
    assert isinstance(split, np.memmap)
    s = ImageSampler(split)
    x = s(16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    idx = torch.randint(50, (16,), generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(to_uint8(x), arr[idx])  # exact round trip


def test_sampler_is_deterministic_given_the_generator(prepared):
    d, _ = prepared
    s = ImageSampler(load_split(d))
    a = s(8, torch.Generator().manual_seed(1))
    b = s(8, torch.Generator().manual_seed(1))
    c = s(8, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_missing_manifest_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="snakemake --cores 2 .*manifest.json"):
        load_split(tmp_path / "shoes_128")


def test_to_float_channels_last():
    u = torch.randint(0, 256, (2, 4, 4, 3), dtype=torch.uint8)
    x = to_float(u, channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    # the one-pass conversion may differ from this formula by one float32 ulp
    assert x[0, :, 0, 0].tolist() == pytest.approx((u[0, 0, 0].float() / 127.5 - 1).tolist(), abs=1e-6)
