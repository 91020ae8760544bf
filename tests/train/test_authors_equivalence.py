"""Our image trainer takes the authors' steps: NOT strong, NOT weak and Kernel NOT (energy).

Each test builds our trainer the way the pipeline does (a run block validated by
``notpipe.config``, then :func:`notpipe.train.run.build_trainer`; CPU, compile off, fp32
autocast off, channels-last and fused Adam as configured by default) at small widths: 32 px,
U-Net ``t_base`` 8 with the authors' depth 4, ResNet_D ``f_nf`` 8 / ``f_max`` 32, batch 4,
``k_t`` 2, ``z_size`` 3, 2 f-steps (32 px: at depth 4 a 16 px image reaches the bottleneck
as 1x1 maps, on which the conditional instance norm's unbiased variance is undefined). Its samplers and
noise are wrapped by a recorder that passes the real draws through and keeps them (the
*tape*). The authors' networks and loops in ``tests/reference`` (written from their
notebooks and ``src/``, no ``notpipe`` import) start from a copy of our initial weights and
run on the same tape; then T's and f's weights, T's BatchNorm running statistics and every
logged loss (T loss and cost term, means over the ``k_t`` T-steps; f loss) must agree.

Two precisions, for two reasons:

* float64 (networks converted after ``build_trainer``, draws cast; the trainer code path is
  unchanged) is where weights can be compared sharply. In fp32 the conv biases in front of
  every BatchNorm get gradients that are exactly zero in exact arithmetic and rounding noise
  (~1e-8) in fp32; Adam normalises that noise into steps of +-lr, so two correct fp32
  implementations already differ by ~lr per update in those biases, and through them in
  everything else (measured: 6.9e-4 in the weights and running statistics after 2 f-steps,
  the size of the whole update). In float64 that noise stays below Adam's eps. Our trainer
  still casts the cost and f's outputs to fp32 (``.float()``), which is what remains.
* fp32 is the precision the pipeline trains in on the CPU: there the logged losses are compared.

Tolerances (largest differences measured here on torch 2.x CPU, next to each constant) are
one to two decades above what was measured and far below what a different computation
gives: T's BatchNorm in train mode during the f-step changes the f loss by ~1e-2 and the
running statistics by ~1e-1; the kernel cost's ``mean`` scaling changes its T loss by a factor
of ~100.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn as nn
from reference import authors_loops as loops
from reference import authors_nets as nets

from notpipe.config import validate_config
from notpipe.data.loader import ImageSampler
from notpipe.train.run import build_trainer

SIZE, BATCH, K_T, STEPS, BASE, F_NF, F_MAX = 32, 4, 2, 2, 8, 8, 32
GAMMA, GAMMA_WARMUP = 0.66, 2  # warm-up over the test's 2 f-steps: gamma 0 then 0.33
MILESTONES = [1, 2]  # both inside the test's f-steps: lr 1e-4 -> 5e-5 -> 2.5e-5
Z_SIZE, LATENT = 3, 8

#: float64: |ours - theirs| of the logged losses divided by max(1, |loss|) (measured <= 6e-8
#: over five data/init seeds: the fp32 casts of the cost and of f's outputs in our trainer);
#: T's parameters (<= 9e-7, a hundredth of one Adam step at lr 1e-4), f's parameters
#: (<= 7e-9), T's running statistics (<= 1.3e-7)
F64_LOSS, F64_T, F64_F, F64_STATS = 1e-6, 1e-5, 1e-7, 1e-6
#: fp32: the same loss measure (measured <= 6e-5 over five seeds; the weights have drifted apart
#: by Adam's +-lr steps on noise, see the module docstring)
F32_LOSS = 1e-3

RUNS = {
    "strong": {"cost": {"name": "strong"}},
    "weak": {"cost": {"name": "weak", "gamma": GAMMA, "z_size": Z_SIZE, "gamma_warmup": GAMMA_WARMUP},
             "model": {"noise_channels": 1, "z_std": 0.1}},
    "kernel": {"cost": {"name": "kernel", "gamma": GAMMA, "z_size": Z_SIZE, "gamma_warmup": GAMMA_WARMUP},
               "model": {"latent_dim": LATENT, "z_std": 1.0}, "optim": {"milestones": MILESTONES}},
}


def run_block(kind: str) -> dict:
    """A validated ``images.runs`` block of ``kind`` at the test's sizes (schema defaults elsewhere)."""
    spec = RUNS[kind]
    run = {"source": "shapes_circles", "target": "shapes_squares", "image_size": SIZE,
           "cost": dict(spec["cost"]),
           "model": {"t_base": BASE, "f_nf": F_NF, "f_max": F_MAX, **spec.get("model", {})},
           "optim": dict(spec.get("optim", {})), "speed": {"precision": "fp32", "compile": False},
           "steps": STEPS, "batch": BATCH, "k_t": K_T, "log_every": 1, "checkpoint_every": STEPS,
           "snapshot_every": 0, "grid_every": 0, "seed": 3}
    return validate_config({"images": {"runs": {"r": run}}})["images"]["runs"]["r"]


class Recorder:
    """Pass-through of a sampler or noise source that keeps a contiguous copy of every draw
    (``dtype``: each draw cast to it first, for the float64 runs)."""

    def __init__(self, draw, dtype: torch.dtype | None = None):
        self.draw, self.dtype, self.calls = draw, dtype, []

    def __call__(self, *args, **kwargs):
        out = self.draw(*args, **kwargs)
        if self.dtype is not None:
            out = out.to(self.dtype)
        self.calls.append(out.detach().clone(memory_format=torch.contiguous_format))
        return out


# ---------------------------------------------------------------- our modules <-> theirs
def _module_pairs(T: nn.Module, f: nn.Module, T_ref: nn.Module, f_ref: nn.Module):
    """Corresponding submodules of our networks and the authors' (T, then f).

    Inside a pair, parameters and buffers correspond in registration order; the pairs
    themselves follow the authors' layout (their ``CondINorm`` registers ``shift_conv``
    before ``scale_conv`` and their ResNet_D ``conv_img`` before ``resnet``).
    """
    pairs = [(T.inc, T_ref.inc.double_conv)]
    pairs += [(T.downs[k][1], getattr(T_ref, f"down{k + 1}").maxpool_conv[1].double_conv) for k in range(4)]
    pairs += [(T.ups[j], getattr(T_ref, f"up{j + 1}").conv.double_conv) for j in range(4)]
    if T.norms is not None:
        for j in range(4):
            ad = getattr(T_ref, f"adain{j + 1}")
            pairs += [(T.norms[j].shift, ad.shift_conv[0]), (T.norms[j].scale, ad.scale_conv[0])]
    pairs.append((T.outc, T_ref.outc.conv))
    pairs += [(f.conv_img, f_ref.conv_img), (f.resnet, f_ref.resnet), (f.fc, f_ref.fc)]
    return pairs


def linked_tensors(T, f, T_ref, f_ref) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(our name, ours, theirs)`` for every parameter and buffer of both networks, shapes checked.

    Our CondINorm's ``Linear(ZC, C)`` weights are the authors' 1x1 convs ``(C, ZC, 1, 1)``.
    Fails unless every tensor of all four networks is linked exactly once.
    """
    qualified = {id(t): f"{side}.{n}" for side, net in (("T", T), ("f", f))
                 for n, t in [*net.named_parameters(), *net.named_buffers()]}
    out = []
    for ours, theirs in _module_pairs(T, f, T_ref, f_ref):
        a = [*ours.named_parameters(), *ours.named_buffers()]
        b = [*theirs.named_parameters(), *theirs.named_buffers()]
        assert [n.rsplit(".", 1)[-1] for n, _ in a] == [n.rsplit(".", 1)[-1] for n, _ in b], (ours, theirs)
        for (name, x), (_, y) in zip(a, b):
            one_by_one = isinstance(ours, nn.Linear) and y.shape == x.shape + (1, 1)
            assert x.shape == y.shape or one_by_one, (name, x.shape, y.shape)
            out.append((qualified[id(x)], x, y))
    for net, side in ((T, 1), (f, 1), (T_ref, 2), (f_ref, 2)):
        have = {id(t[side]) for t in out}
        every = [*net.parameters(), *net.buffers()]
        assert all(id(t) in have for t in every), f"{type(net).__name__}: tensors left unlinked"
    assert len({id(t[1]) for t in out}) == len(out) == len({id(t[2]) for t in out})
    return out


def reference_nets(kind: str) -> tuple[nn.Module, nn.Module]:
    if kind == "strong":
        T = nets.UNet(3, 3, base_factor=BASE)
    elif kind == "weak":
        T = nets.UNet(3 + 1, 3, base_factor=BASE)  # ZC = 1 noise channel
    else:
        T = nets.CUNet(3, 3, LATENT, base_factor=BASE)
    f = nets.ResNet_D(SIZE, nc=3, nfilter=F_NF, nfilter_max=F_MAX)
    f.apply(nets.weights_init_D)
    return T, f


# ---------------------------------------------------------------- the two runs
def _tape(p: Recorder, q: Recorder, noise: Recorder | None) -> loops.Tape:
    """The authors' view of our draws. Per f-step ours draws the k_t T-batches in one call,
    then the f-step's X, then its Y; z once per T-step (B * Z rows, x-major) and once per f-step."""
    tape = loops.Tape()
    for s in range(STEPS):
        tape.t_x.append(list(p.calls[2 * s].split(BATCH)))
        tape.f_x.append(p.calls[2 * s + 1])
        tape.f_y.append(q.calls[s])
        if noise is not None:
            zs = noise.calls[s * (K_T + 1):(s + 1) * (K_T + 1)]
            as_image = lambda z, k: z.view(BATCH, k, *z.shape[1:]) if z.dim() == 4 else \
                z.view(BATCH, k, z.shape[1], 1, 1)  # noqa: E731  (kernel: (B, Z, ZC, 1, 1))
            tape.t_z.append([as_image(z, Z_SIZE) for z in zs[:K_T]])
            tape.f_z.append(as_image(zs[K_T], 1)[:, 0])
    assert len(p.calls) == 2 * STEPS and len(q.calls) == STEPS
    assert noise is None or len(noise.calls) == STEPS * (K_T + 1)
    return tape


def _bn_watch(T: nn.Module) -> list[dict]:
    """For every forward of T: its mode and its BatchNorm running statistics before and after."""
    calls = []

    def stats():
        return [b.detach().clone() for n, b in T.named_buffers() if "running" in n]

    T.register_forward_pre_hook(lambda m, a: calls.append({"training": m.training, "before": stats()}))
    T.register_forward_hook(lambda m, a, o: calls[-1].update(after=stats()))
    return calls


@functools.cache
def compare(kind: str, dtype: torch.dtype = torch.float32) -> dict:
    """Run ours and the authors' on the same tape; the largest differences and the raw results.

    float32: the pipeline's CPU precision. float64: both networks converted after
    ``build_trainer`` (their optimisers keep the same parameter objects) and every draw cast,
    the rest of the path unchanged.
    """
    run = run_block(kind)
    rng = np.random.default_rng(7)
    src, tgt = (rng.integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2))
    cl = run["speed"]["channels_last"]
    cast = None if dtype == torch.float32 else dtype
    p, q = Recorder(ImageSampler(src, "cpu", cl), cast), Recorder(ImageSampler(tgt, "cpu", cl), cast)
    tr = build_trainer(run, p, q, "cpu")
    tr.T.to(dtype)
    tr.f.to(dtype)
    noise = None
    if tr.noise is not None:
        noise = tr.noise = Recorder(tr.noise, cast)
    T_ref, f_ref = (net.to(dtype) for net in reference_nets(kind))
    links = linked_tensors(tr.T, tr.f, T_ref, f_ref)
    with torch.no_grad():
        for _, ours, theirs in links:
            theirs.copy_(ours.reshape(theirs.shape))
    bn_calls = _bn_watch(tr.T)
    rows = []
    tr.run(STEPS, on_log=rows.append, progress=False)

    tape = _tape(p, q, noise)
    T_opt, f_opt = loops.adam_pair(T_ref, f_ref)
    if kind == "strong":
        ref = loops.not_strong(T_ref, f_ref, T_opt, f_opt, tape)
    elif kind == "weak":
        ref = loops.not_weak(T_ref, f_ref, T_opt, f_opt, tape, Z_SIZE, 0.0, GAMMA, GAMMA_WARMUP)
    else:
        T_sched, f_sched = loops.multistep_pair(T_opt, f_opt, MILESTONES)
        ref = loops.knot_energy(T_ref, f_ref, T_opt, f_opt, T_sched, f_sched, tape, Z_SIZE, 0.0, GAMMA,
                                GAMMA_WARMUP)

    diffs = [(name, (ours.double() - theirs.reshape(ours.shape).double()).abs().max().item())
             for name, ours, theirs in links]

    def max_diff(select):
        return max((d for name, d in diffs if select(name)), default=0.0)

    return {"rows": rows, "ref": ref, "bn_calls": bn_calls, "trainer": tr, "diffs": diffs, "links": links,
            "opt_ref": (T_opt, f_opt),
            "params_T": max_diff(lambda n: n.startswith("T.") and "running" not in n and "num_batches" not in n),
            "params_f": max_diff(lambda n: n.startswith("f.")),
            "stats": max_diff(lambda n: "running" in n),
            "batches_tracked": max_diff(lambda n: "num_batches" in n)}


# ---------------------------------------------------------------- tests
def _loss_diff(c: dict) -> dict:
    """Per logged loss: max over f-steps of |ours - theirs| / max(1, |ours|)."""
    return {key: max(abs(r[key] - float(np.mean(e[key]))) / max(1.0, abs(r[key])) for r, e in zip(c["rows"], c["ref"]))
            for key in ("loss_t", "cost", "loss_f")}


@pytest.mark.parametrize("kind", list(RUNS))
def test_two_f_steps_equal_the_authors(kind):
    """float64: T's and f's weights, T's BatchNorm running statistics and every logged loss after
    2 f-steps (k_t = 2 T-steps each) equal the authors' loop on the same inputs."""
    c = compare(kind, torch.float64)
    loss = _loss_diff(c)
    print(kind, {k: f"{v:.1e}" for k, v in loss.items()},
          f"T {c['params_T']:.1e} f {c['params_f']:.1e} stats {c['stats']:.1e}")
    assert len(c["rows"]) == len(c["ref"]) == STEPS
    for r, e in zip(c["rows"], c["ref"]):
        assert r["gamma"] == pytest.approx(e["gamma"], abs=1e-12)
        assert len(e["loss_t"]) == len(e["cost"]) == K_T
    for key, d in loss.items():
        assert d < F64_LOSS, (key, loss)
    worst = max(c["diffs"], key=lambda d: d[1])
    assert c["params_T"] < F64_T, worst
    assert c["params_f"] < F64_F, worst
    assert c["stats"] < F64_STATS, worst
    assert c["batches_tracked"] == 0  # one BatchNorm update per T-step, none in the f-step


@pytest.mark.parametrize("kind", list(RUNS))
def test_logged_losses_equal_the_authors_in_fp32(kind):
    """fp32, the pipeline's CPU precision: every logged loss of 2 f-steps equals the authors'."""
    c = compare(kind)
    loss = _loss_diff(c)
    print(kind, {k: f"{v:.1e}" for k, v in loss.items()})
    for key, d in loss.items():
        assert d < F32_LOSS, (key, loss)


def test_the_comparison_covers_moving_losses_and_gamma():
    """The weights and losses move over the 2 f-steps (the equality is not of the initial state),
    the weak and kernel runs' gamma warms up inside them."""
    for kind in RUNS:
        c = compare(kind, torch.float64)
        assert c["rows"][0]["loss_f"] != c["rows"][1]["loss_f"]
        first = c["ref"][0]["loss_t"]
        assert first[0] != first[1]  # the first T-step changed T
        if kind != "strong":
            assert [e["gamma"] for e in c["ref"]] == [0.0, pytest.approx(GAMMA / GAMMA_WARMUP)]


def test_learning_rates_after_the_milestones_equal_the_authors():
    """Kernel NOT's MultiStepLR on both optimisers, stepped once per f-step (milestones 1 and 2)."""
    c = compare("kernel", torch.float64)
    tr, (T_opt, f_opt) = c["trainer"], c["opt_ref"]
    want = 1e-4 * loops.KNOT_LR_DECAY ** len(MILESTONES)
    assert T_opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12)
    assert tr.opt_t.param_groups[0]["lr"] == pytest.approx(T_opt.param_groups[0]["lr"], rel=1e-12)
    assert tr.opt_f.param_groups[0]["lr"] == pytest.approx(f_opt.param_groups[0]["lr"], rel=1e-12)
    # the rates logged after each f-step's scheduler step, as the authors' loop leaves them
    assert [r["lr_t"] for r in c["rows"]] == pytest.approx([e["lr_t"] for e in c["ref"]], rel=1e-12)
    assert [r["lr_f"] for r in c["rows"]] == pytest.approx([e["lr_f"] for e in c["ref"]], rel=1e-12)


@pytest.mark.parametrize("kind", list(RUNS))
def test_f_step_leaves_T_running_statistics_unchanged(kind):
    """The f-step pushes X through T in eval mode (the authors' ``freeze(T)``): BatchNorm uses its
    running statistics and does not update them; the T-steps run in train mode and do."""
    calls = compare(kind)["bn_calls"]
    assert len(calls) == STEPS * (K_T + 1)
    for i, call in enumerate(calls):
        f_step = i % (K_T + 1) == K_T
        changed = any(not torch.equal(a, b) for a, b in zip(call["before"], call["after"]))
        assert call["training"] == (not f_step), (i, "f-step" if f_step else "T-step", call["training"])
        assert changed == (not f_step), (i, "f-step" if f_step else "T-step")
