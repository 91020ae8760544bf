"""notpipe.data.noise_source: OTM's generation input Q(z) (bicubic upsampling of low-dim noise)."""

import numpy as np
import torch
import torch.nn.functional as F

from notpipe.data.loader import to_float
from notpipe.data.noise_source import NoiseInputs, NoiseSampler, embed

NOISE = {"shape": [3, 4, 4], "upsample": 8, "std": 1.0}


def test_sampler_draws_q_of_z_from_the_trainers_generator():
    s = NoiseSampler(NOISE)
    a = s(6, torch.Generator().manual_seed(0))
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    z = torch.randn((6, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, F.interpolate(z, scale_factor=8, mode="bicubic", align_corners=False))
    # a data-parallel rank's rows are the same rows of the whole draw
    rows = np.array([1, 4])
    assert torch.allclose(s(6, torch.Generator().manual_seed(0), rows=rows), a[rows])
    assert torch.allclose(NoiseSampler({**NOISE, "std": 2.0})(6, torch.Generator().manual_seed(0)), 2 * a)


def test_q_is_smooth_and_keeps_the_mean_of_each_block():
    z = torch.randn(2, 3, 4, 4)
    q = embed(z, 8)
    assert torch.allclose(q.mean(dim=(2, 3)), z.mean(dim=(2, 3)), atol=0.1)
    assert embed(z, 1) is z


def test_inputs_are_a_fixed_seeded_test_split_that_to_float_passes_through():
    a, b = NoiseInputs(NOISE, 10, seed=5), NoiseInputs(NOISE, 10, seed=5)
    assert len(a) == 10 and np.array_equal(a[:4], b[:4]) and a[:4].shape == (4, 3, 32, 32)
    assert np.array_equal(a[2], a[2:3][0]) and np.array_equal(np.array(a)[:4], a[:4])
    assert not np.array_equal(NoiseInputs(NOISE, 10, seed=6)[:4], a[:4])
    x = to_float(torch.from_numpy(np.array(a[:4])))
    assert torch.equal(x, torch.from_numpy(a[:4]))
    u8 = to_float(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8))  # uint8 NHWC still converted
    assert u8.shape == (1, 3, 2, 2) and (u8 == 1).all()
