import pytest
import torch

from notpipe.core.optim import FlatAdam, make_adam
from notpipe.toy.models import MLP


def _train(make_opt, steps=25):
    torch.manual_seed(0)
    net = MLP(3, 2, (8, 8))
    opt = make_opt(net)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 3, generator=gen)
        loss = net(x).pow(2).mean() + net(x).sum() * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_flat_adam_equals_torch_adam():
    kw = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=1e-3)
    ours = _train(lambda n: FlatAdam(n.parameters(), **kw))
    ref = _train(lambda n: torch.optim.Adam(n.parameters(), foreach=False, **kw))
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ours, _train(lambda n: FlatAdam(n.parameters(), **kw), steps=0))


def test_flat_adam_state_roundtrip_continues_identically():
    torch.manual_seed(0)
    a, b = MLP(2, 1, (4,)), MLP(2, 1, (4,))
    b.load_state_dict(a.state_dict())
    oa, ob = FlatAdam(a.parameters(), 1e-2), FlatAdam(b.parameters(), 1e-2)
    x = torch.randn(8, 2)
    for _ in range(3):
        oa.zero_grad(); a(x).sum().backward(); oa.step()
    b.load_state_dict(a.state_dict())
    ob.load_state_dict(oa.state_dict())
    for _ in range(3):
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad(); net(x).sum().backward(); opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_make_adam_choices():
    net = MLP(2, 1, (4,))
    assert isinstance(make_adam(net, 1e-3, impl="flat"), FlatAdam)
    assert isinstance(make_adam(MLP(2, 1, (4,)), 1e-3, impl="torch"), torch.optim.Adam)
    with pytest.raises(ValueError, match="allowed: flat, torch"):
        make_adam(net, 1e-3, impl="sgd")


def _lrs(opt, sched, steps=8):
    out = []
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("flat", [True, False])
def test_step_decay_follows_torch_multisteplr(flat):
    from notpipe.core.optim import StepDecay

    net = MLP(3, 2, (8,))
    ref_opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    ref = _lrs(ref_opt, torch.optim.lr_scheduler.MultiStepLR(ref_opt, [3, 5], 0.1))
    opt = FlatAdam(MLP(3, 2, (8,)).parameters(), lr=1e-2) if flat else torch.optim.Adam(net.parameters(), lr=1e-2)
    ours = _lrs(opt, StepDecay(opt, [5, 3], 0.1))
    assert ours == pytest.approx(ref) and ours[0] == pytest.approx(1e-2) and ours[-1] == pytest.approx(1e-4)


def test_step_decay_state_roundtrip_restores_the_lr():
    from notpipe.core.optim import StepDecay

    opt = FlatAdam(MLP(3, 2, (8,)).parameters(), lr=1e-2)
    sched = StepDecay(opt, [2], 0.5)
    _lrs(opt, sched, steps=3)
    fresh = FlatAdam(MLP(3, 2, (8,)).parameters(), lr=1e-2)  # a resumed run starts at the base lr
    again = StepDecay(fresh, [2], 0.5)
    again.load_state_dict(sched.state_dict())
    assert fresh.param_groups[0]["lr"] == pytest.approx(5e-3) and again.last_step == 3
