"""notpipe.train.otm_models: OTM's networks (sizes against the reference written from their
scripts, the generator's reading of z from Q(z), batch statistics in every mode, bad shapes)."""

import pytest
import torch
from reference import otm_nets as nets

from notpipe.data.noise_source import embed
from notpipe.train.models import count_parameters
from notpipe.train.otm_models import (OTMGenerationPotential, OTMGenerator, OTMRestorationMap,
                                      OTMRestorationPotential, blocks_for)


def test_parameter_counts_at_the_authors_widths_are_theirs():
    assert count_parameters(OTMGenerator((3, 8, 8), 8, 256)) == count_parameters(nets.GenTransportMap(192, 3, 256)) \
        == 23_405_315
    assert count_parameters(OTMGenerationPotential(64, 128)) == count_parameters(nets.GenResNetD(3, 1, 128))
    assert count_parameters(OTMRestorationMap(64, 256)) == count_parameters(nets.RestTransportMap(3, 256))
    assert count_parameters(OTMRestorationPotential(64, 256)) == count_parameters(nets.RestPsi(3, 256))


def test_the_generator_reads_z_back_from_q_of_z():
    G = OTMGenerator((3, 8, 8), 8, 4).eval()
    z = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    latent = G.latent(embed(z, 8)).view(6, 3, 8, 8)
    assert (latent - z).abs().max() < 1e-5  # measured 2.9e-6 (|z| up to 4)
    assert torch.allclose(G(embed(z, 8)), G(z), atol=1e-5)
    assert "unembed" not in G.state_dict()  # fixed by the noise shape, not a weight


@pytest.mark.parametrize("size", [16, 32, 64])
def test_shapes_at_other_sizes(size):
    k = size // 8
    x = torch.randn(3, 3, size, size)
    assert OTMGenerator((3, 8, 8), k, 4)(embed(torch.randn(3, 3, 8, 8), k)).shape == (3, 3, size, size)
    assert OTMGenerationPotential(size, 4)(x).shape == (3,)
    assert OTMRestorationMap(size, 4)(x).shape == (3, 3, size, size)
    assert OTMRestorationPotential(size, 4)(x).shape == (3,)


def test_batchnorm_uses_batch_statistics_in_evaluation_too():
    """Their BatchNorm2d(track_running_stats=False): no running statistics, the same output in both modes."""
    for T in (OTMGenerator((3, 4, 4), 8, 4), OTMRestorationMap(32, 4)):
        x = torch.randn(4, 3, 32, 32) if isinstance(T, OTMRestorationMap) else torch.randn(4, 3, 4, 4)
        assert not [n for n, _ in T.named_buffers() if "running" in n]
        assert torch.equal(T.train()(x), T.eval()(x))


def test_bad_sizes_and_inputs_are_named():
    with pytest.raises(ValueError, match="image size must be 4 \\* 2\\*\\*n"):
        blocks_for(48)
    with pytest.raises(ValueError, match="expected Q\\(z\\) \\(N, 3, 64, 64\\) or z \\(N, 3, 8, 8\\)"):
        OTMGenerator((3, 8, 8), 8, 4)(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="OTMRestorationMap\\(size=32\\) got input"):
        OTMRestorationMap(32, 4)(torch.randn(2, 3, 64, 64))
