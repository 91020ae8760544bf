"""notpipe.evaluate.paired: PSNR / MSE of restorations against known originals."""

import math

import numpy as np
import torch

from notpipe.evaluate.paired import PSNR_CAP, PairedScore, per_image_mse, psnr, unit


def test_psnr_of_a_hand_computed_case():
    orig = np.zeros((2, 4, 4, 3), np.uint8)
    out = orig.copy()
    out[0] = 51  # 0.2 on [0, 1]: MSE 0.04, PSNR 10 log10(1 / 0.04) = 13.98 dB
    mse = per_image_mse(out, orig)
    assert torch.allclose(mse, torch.tensor([0.04, 0.0], dtype=torch.float64))
    assert math.isclose(float(psnr(mse)[0]), 10 * math.log10(25), rel_tol=1e-9)
    assert float(psnr(mse)[1]) == PSNR_CAP  # an exact reconstruction is capped
    s = PairedScore()
    s.add(out[:1], orig[:1])
    s.add(out[1:], orig[1:])
    r = s.result()
    assert r["n"] == 2 and math.isclose(r["mse"], 0.02) and math.isclose(r["psnr"], (13.9794 + PSNR_CAP) / 2, rel_tol=1e-4)


def test_float_outputs_and_uint8_originals_are_on_one_scale():
    u8 = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    f = torch.from_numpy(u8).permute(0, 3, 1, 2).double() / 127.5 - 1  # the model's [-1, 1] NCHW
    assert torch.allclose(unit(f), unit(u8))
    assert per_image_mse(f, u8).max() < 1e-20
    assert unit(torch.full((1, 3, 2, 2), 3.0)).max() == 1.0  # clamped
