import pytest
import torch

from notpipe.core.noise import GaussianNoise
from notpipe.toy.models import MLP, VectorMap, VectorPotential


def test_shapes():
    x = torch.randn(5, 3)
    assert MLP(3, 2, (7, 7))(x).shape == (5, 2)
    assert VectorPotential(3, (8,))(x).shape == (5,)
    assert VectorMap(3, (8,))(x).shape == (5, 3)
    T = VectorMap(3, (8,), z_dim=2)
    z = GaussianNoise(2, 0.1)(5, torch.Generator().manual_seed(0))
    assert T(x, z).shape == (5, 3)
    with pytest.raises(ValueError, match="z is required"):
        T(x)


def test_noise_std_and_seed():
    n = GaussianNoise((2, 3), std=0.5)
    a = n(20000, torch.Generator().manual_seed(0))
    assert a.shape == (20000, 2, 3) and abs(float(a.std()) - 0.5) < 0.01
    assert torch.equal(a, n(20000, torch.Generator().manual_seed(0)))


def test_kaiming_init_is_the_authors_and_the_default():
    """Kaiming-normal fan_in on every Linear (the authors' weights_init_mlp): weight std
    sqrt(2 / fan_in), sqrt(6) times PyTorch's default; T then depends on x from step 0."""
    torch.manual_seed(0)
    net = MLP(100, 100, hidden=(100, 100, 100))
    for layer in net.layers:
        assert float(layer.weight.std()) == pytest.approx((2 / layer.in_features) ** 0.5, rel=0.05)
    torch.manual_seed(0)
    default = MLP(100, 100, hidden=(100, 100, 100), init="default")
    assert float(default.layers[1].weight.std()) == pytest.approx((1 / 300) ** 0.5, rel=0.05)
    x = torch.randn(1000, 4)
    spread = {init: float(VectorMap(2, (100, 100, 100), 2, init)(x[:, :2], 0.1 * x[:, 2:]).std(0).mean())
              for init in ("kaiming", "default")}
    assert spread["kaiming"] > 10 * spread["default"]
    with pytest.raises(ValueError, match="init"):
        MLP(2, 2, init="xavier")
