"""Grey maps (``model.channels: 1``): T and f work on one channel, T's output is grey."""

import copy

import pytest
import torch

from notpipe.config import ConfigError, validate_config
from notpipe.core.costs import make_cost
from notpipe.train.grey import GreyMap, GreyPotential
from notpipe.train.models import ResNetD, UNet
from notpipe.train.run import build_models

MODEL = {"arch": "unet", "t_base": 8, "t_depth": 2, "f_nf": 8, "f_max": 16, "noise_channels": 1,
         "latent_dim": 0, "z_std": 0.1}


def grey_batch(n=4, size=16, seed=0):
    g = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return g.repeat(1, 3, 1, 1)  # a grey data set stored as RGB


@pytest.mark.parametrize("cost", [{"name": "strong"}, {"name": "weak", "gamma": 0.5, "z_size": 2}])
def test_grey_networks_have_one_channel_and_grey_outputs(cost):
    T, f, noise = build_models({**MODEL, "channels": 1}, make_cost(cost), 16)
    assert isinstance(T, GreyMap) and isinstance(f, GreyPotential)
    assert T.net.inc[0].in_channels == 1 + (noise is not None) and T.net.outc.out_channels == 1
    assert f.net.conv_img.in_channels == 1
    x = grey_batch()
    y = T(x) if noise is None else T(x, torch.randn(4, 1, 16, 16))
    assert y.shape == x.shape
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
    assert f(y).shape == (4,)


def test_grey_map_is_its_one_channel_network_on_grey_data():
    torch.manual_seed(0)
    net, pot = UNet(1, 1, base=8, depth=2).eval(), ResNetD(16, 1, nf=8, nf_max=16).eval()
    x = grey_batch()
    assert torch.allclose(GreyMap(net)(x), net(x[:, :1]).repeat(1, 3, 1, 1), atol=1e-6)
    assert torch.allclose(GreyPotential(pot)(x), pot(x[:, :1]), atol=1e-6)
    rgb = torch.rand(2, 3, 16, 16)  # colour input: the mean of its channels
    assert torch.allclose(GreyMap(net)(rgb)[:, :1], net(rgb.mean(1, keepdim=True)), atol=1e-6)


def test_three_channels_stay_the_default():
    T, f, _ = build_models(MODEL, make_cost({"name": "strong"}), 16)
    assert isinstance(T, UNet) and T.inc[0].in_channels == 3 and T.outc.out_channels == 3
    assert isinstance(f, ResNetD) and f.conv_img.in_channels == 3


RUN = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
       "model": {"t_depth": 2}}


def test_channels_is_absent_unless_set():
    """Unset, the key stays out of the validated run: older runs keep their fingerprints."""
    cfg = validate_config({"images": {"runs": {"a": RUN, "b": {**RUN, "model": {"t_depth": 2, "channels": 1}}}}})
    assert "channels" not in cfg["images"]["runs"]["a"]["model"]
    assert cfg["images"]["runs"]["b"]["model"]["channels"] == 1


@pytest.mark.parametrize("model, key", [
    ({"t_depth": 2, "channels": 2}, "images.runs.a.model.channels: 2 is not allowed; allowed values: 1, 3"),
    ({"arch": "otm_restoration", "channels": 1}, "images.runs.a.model.channels: grey maps are U-Net maps"),
])
def test_bad_channels_are_named(model, key):
    run = copy.deepcopy(RUN)
    run["model"] = model
    with pytest.raises(ConfigError) as e:
        validate_config({"images": {"runs": {"a": run}}})
    lines = str(e.value).splitlines()[1:]  # "invalid config:", then one line per error
    assert len(lines) == 1 and key in lines[0]
