"""LPIPS diversity / content metrics with an offline (local or seeded random) trunk."""


import pytest
import torch
import torchvision

from notpipe.evaluate import lpips as lm
from notpipe.evaluate import weights as W
from notpipe.evaluate.fid import MissingWeightsError

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def lp():
    return lm.build_lpips("alex", random_smoke=True, seed=0)


def images(n=6, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    a, b = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    return (a * xx + (1 - a) * yy) * b + 0.2 * torch.rand(n, 3, size, size, generator=g) - 0.1


def noisy_map(amplitude):
    def sample(x, m):
        g = torch.Generator().manual_seed(1)
        return x[:, None] + amplitude * torch.randn(len(x), m, *x.shape[1:], generator=g)
    return sample


def test_deterministic_map_has_zero_diversity(lp):
    x = images()
    det = lm.lpips_diversity(lambda xb, m: torch.tanh(xb)[:, None].expand(-1, m, -1, -1, -1), x, 5, lp)
    assert det == 0.0


def test_diversity_grows_with_noise_amplitude(lp):
    x = images()
    d = [lm.lpips_diversity(noisy_map(a), x, 4, lp, batch_size=7, input_batch=4) for a in (0.05, 0.2, 0.5)]
    assert 0 < d[0] < d[1] < d[2], d


def test_diversity_uses_consecutive_pairs(lp):
    """(N, M) outputs -> mean over the N * (M - 1) pairs (out_j, out_{j+1})."""
    x = images(2)
    out = noisy_map(0.3)(x, 3)
    expect = torch.stack([lp(out[i, j:j + 1], out[i, j + 1:j + 2]).reshape(()) for i in range(2) for j in range(2)])
    assert lm.lpips_diversity(lambda xb, m: out, x, 3, lp) == pytest.approx(float(expect.double().mean()), rel=1e-5)


def test_content_lpips(lp):
    x = images()
    assert lm.lpips_content(x, x, lp) == 0.0
    assert 0 < lm.lpips_content(x, x + 0.1, lp) < lm.lpips_content(x, -x, lp)
    grey = x[:, :1]
    assert lm.lpips_content(grey, grey * 0.5, lp) > 0  # one channel replicated to RGB


def test_random_smoke_is_seeded_and_labelled(lp):
    a, b = lm.build_lpips("alex", random_smoke=True, seed=0), lm.build_lpips("alex", random_smoke=True, seed=1)
    sa, sb, s0 = a.state_dict(), b.state_dict(), lp.state_dict()
    assert all(torch.equal(sa[k], s0[k]) for k in s0)
    assert not torch.equal(sb["net.slice1.0.weight"], s0["net.slice1.0.weight"])
    assert torch.equal(sb["lin0.model.1.weight"], s0["lin0.model.1.weight"])  # heads: the wheel's
    assert lp.smoke and not any(p.requires_grad for p in lp.parameters())


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_missing_backbone_weights(net, tmp_path):
    name, url = lm.backbone_file(net)
    assert name == {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}[net]
    for weights, where in ((tmp_path / "w" / name, tmp_path / "w" / name), (tmp_path, tmp_path / name)):
        with pytest.raises(MissingWeightsError) as e:
            lm.build_lpips(net, weights)
        msg = str(e.value)
        assert name in msg and str(where) in msg and url in msg and "\n" not in msg
    with pytest.raises(MissingWeightsError, match=name):
        lm.build_lpips(net, None)


def test_local_backbone_file_is_loaded(tmp_path):
    tv = torchvision.models.alexnet()  # stand-in for the ImageNet file, same keys
    torch.save(tv.state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(W.WeightsError, match="is not the published alexnet-owt-7be5be79.pth"):
        lm.build_lpips("alex", tmp_path)  # not the pinned file
    lp = lm.build_lpips("alex", tmp_path, allow_unpinned=True)
    net = lp.net.state_dict()
    assert torch.equal(net["slice1.0.weight"], tv.features[0].weight)
    assert torch.equal(net["slice5.10.bias"], tv.features[10].bias)
    assert not lp.smoke and lp.backbone_weights == tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision alex state dict"):
        lm.build_lpips("alex", tmp_path / "bad.pth", allow_unpinned=True)


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_heads_are_the_pinned_wheel_files_loaded_as_lpips_does(net):
    import warnings

    import lpips

    mine = lm.build_lpips(net, random_smoke=True).state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False).state_dict()
    heads = [k for k in theirs if k.startswith("lin")]
    assert heads and all(torch.equal(mine[k], theirs[k]) for k in heads)
    assert W.check(lm.heads_file(net), f"lpips-v0.1-{net}.pth") == W.LPIPS_HEADS[net]


def test_tampered_heads_are_refused(tmp_path, monkeypatch):
    """lpips' heads are pinned in full: a changed file in the installed wheel is not loaded."""
    fake = tmp_path / "alex.pth"
    fake.write_bytes(lm.heads_file("alex").read_bytes() + b"\0")
    monkeypatch.setattr(lm, "heads_file", lambda net: fake)
    with pytest.raises(W.WeightsError, match="is not the published lpips-v0.1-alex.pth") as e:
        lm.build_lpips("alex", random_smoke=True)
    assert "\n" not in str(e.value)
