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
