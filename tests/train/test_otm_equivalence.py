"""Our trainer takes OTM's steps: generation from noise and the three unpaired restorations.

Each test builds our trainer the way the pipeline does (a run block validated by
``notpipe.config``, :func:`notpipe.train.run.build_trainer`; a restoration's source sampler
wrapped by :class:`~notpipe.data.fresh_degrade.DegradingSampler` as :func:`notpipe.train.run.build`
does for a data set degraded per batch) on the CPU, at the authors' 64 px with narrow networks
(``features`` 8 for G and ψ), batch 4, 2 iterations of K_psi 1 and K_G 2 / 5 / 5 / 2
(generation / denoise / colorize / inpaint). Recorders pass the real draws through and keep
them: the noise z (generation), the clean source batches and the degradation's standard-normal
draws (denoise), the target batches. The authors' networks and loop in ``tests/reference``
(written from their scripts, no ``notpipe`` import) start from a copy of our initial weights
(copied in registration order, shapes asserted) and run on the same tape; then G's and ψ's
weights and every logged loss must agree.

What is compared, since our f is OTM's -ψ (:mod:`notpipe.train.otm_models`): ``loss_f`` = their
``psi_loss`` minus its dot term; ``grad_optimality`` = their ``go_loss``; ``loss_t`` = their
``G_loss`` plus ``mean psi(Y)`` (a term of their G loss without gradient, which our T-step does
not compute); ``cost`` = minus their dot term. Loss differences are |ours - theirs| / max(1, |theirs|).

Two precisions, for two reasons (largest differences measured over seeds 3, 4, 5, torch 2.x CPU):

* float64 (networks converted after ``build_trainer``, draws cast; the trainer code path is
  unchanged, its losses still pass through fp32 casts) is where the weights can be compared
  sharply: weights <= 6.9e-8, losses <= 1.1e-7 after 2 iterations. Tolerance 1e-6 for both.
* fp32, the pipeline's precision, on the same path: the first iteration's losses agree to
  <= 2.1e-7 (tolerance 1e-5), the restorations' losses of both iterations to <= 1.2e-6 (1e-4).
  The weights do not agree sharply in fp32, for a reason that is OTM's, not ours: Adam with
  betas (0, 0.9) moves every parameter by about ±lr whatever the size of its gradient, so a
  gradient that is rounding noise (exactly 0 for the conv biases in front of a BatchNorm) or
  that changes sign under rounding becomes a step of lr. The authors' own generation loop, run
  twice with z perturbed by 1e-7 (relative), ends 2 iterations with weights 1.5e-3 apart
  (lr 2e-4); ours vs. theirs: <= 9.5e-4 (generation, lr 2e-4), <= 2.0e-4 (restoration, lr 1e-4),
  and the generation's second-iteration losses <= 4.4e-3. In fp32 the weights are held to
  Adam's bound, 2 lr per step of each player, and the generation's losses to 2e-2.

A setting of OTM reverted to NOT's in our run block (potential first, the gradient-optimality
term, the inner-product cost) moves the float64 weights by >= 4.2e-4 and the losses by >= 2.7e-5
(``test_each_otm_setting_is_needed``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn as nn
from reference import otm_loops as loops
from reference import otm_nets as nets

from notpipe.config import validate_config
from notpipe.data.fresh_degrade import DegradingSampler
from notpipe.data.loader import ImageSampler
from notpipe.data.noise_source import NoiseSampler
from notpipe.train.run import build_trainer

SIZE, BATCH, STEPS, G_FEATURES, PSI_FEATURES, SEED = 64, 4, 2, 8, 8, 3
#: float64: losses and weights after 2 iterations (measured <= 1.1e-7 and <= 6.9e-8)
F64_LOSS, F64_WEIGHTS = 1e-6, 1e-6
#: fp32: losses of the first iteration (measured <= 2.1e-7), of both iterations of a restoration
#: (<= 1.2e-6) and of generation (<= 4.4e-3)
F32_FIRST, F32_RESTORATION, F32_GENERATION = 1e-5, 1e-4, 2e-2

DATASETS = {
    "clean": {"format": "derived", "base": "shapes_squares", "half": 1},
    "noisy": {"format": "derived", "base": "shapes_squares", "half": 0,
              "degrade": {"name": "noise", "sigma": 0.15, "fresh": True}},
    "gray": {"format": "derived", "base": "shapes_squares", "half": 0, "degrade": {"name": "gray", "fresh": True}},
    "masked": {"format": "derived", "base": "shapes_squares", "half": 0,
               "degrade": {"name": "mask", "box": "right_half", "fill": "grey", "fresh": True}},
}
OTM = {"cost": {"name": "strong", "form": "inner", "scaling": "half_mean"}, "order": "potential_first", "k_f": 1}
KINDS = {
    "generation": {"source": "noise", "noise": {"shape": [3, 8, 8], "upsample": 8}, "target": "shapes_squares",
                   "model": {"arch": "otm_generation"}, "k_t": 2, "gradient_optimality": 10, "lr": 2e-4},
    "denoise": {"source": "noisy", "target": "clean", "model": {"arch": "otm_restoration"}, "k_t": 5, "lr": 1e-4},
    "colorize": {"source": "gray", "target": "clean", "model": {"arch": "otm_restoration"}, "k_t": 5, "lr": 1e-4},
    "inpaint": {"source": "masked", "target": "clean", "model": {"arch": "otm_restoration"}, "k_t": 2, "lr": 1e-4},
}
REFERENCE = {"denoise": loops.degrade_noise, "colorize": loops.degrade_gray, "inpaint": loops.degrade_inpaint,
             "generation": loops.no_degradation}


def run_block(kind: str, **override) -> tuple[dict, dict]:
    """The validated run block of ``kind`` (and the validated config's data sets)."""
    spec = dict(KINDS[kind])
    lr = spec.pop("lr")
    run = {**OTM, **spec, "image_size": SIZE,
           "model": {**spec["model"], "t_base": G_FEATURES, "f_nf": PSI_FEATURES},
           "optim": {"lr_t": lr, "lr_f": lr, "betas": [0.0, 0.9], "weight_decay": 0},
           "speed": {"precision": "fp32", "compile": False}, "steps": STEPS, "batch": BATCH,
           "log_every": 1, "checkpoint_every": STEPS, "snapshot_every": 0, "grid_every": 0, "seed": SEED}
    run.update(override)
    cfg = validate_config({"datasets": DATASETS, "images": {"runs": {"r": run}}})
    return cfg["images"]["runs"]["r"], cfg["datasets"]


class Recorder:
    """Pass-through of a draw that keeps a contiguous copy of each result (``dtype``: cast first)."""

    def __init__(self, draw, dtype: torch.dtype | None = None):
        self.draw, self.dtype, self.calls = draw, dtype, []

    def __call__(self, *args, **kwargs):
        out = self.draw(*args, **kwargs)
        if self.dtype is not None:
            out = out.to(self.dtype)
        self.calls.append(out.detach().clone(memory_format=torch.contiguous_format))
        return out


def linked_parameters(ours: list[nn.Module], theirs: list[nn.Module]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(our name, ours, theirs)`` for every parameter, in registration order, shapes and kinds asserted."""
    a = [(f"{side}.{n}", p) for side, m in zip(("T", "f"), ours) for n, p in m.named_parameters()]
    b = [(n, p) for m in theirs for n, p in m.named_parameters()]
    assert len(a) == len(b), (len(a), len(b))
    for (na, pa), (nb, pb) in zip(a, b):
        assert pa.shape == pb.shape and na.rsplit(".", 1)[-1] == nb.rsplit(".", 1)[-1], (na, nb, pa.shape, pb.shape)
    return [(na, pa, pb) for (na, pa), (_, pb) in zip(a, b)]


def reference_nets(kind: str) -> tuple[nn.Module, nn.Module]:
    if kind == "generation":
        return nets.GenTransportMap(192, 3, G_FEATURES), nets.GenResNetD(3, 1, PSI_FEATURES)
    return nets.RestTransportMap(3, G_FEATURES), nets.RestPsi(3, PSI_FEATURES)


@functools.cache
def compare(kind: str, seed: int = SEED, dtype: torch.dtype = torch.float32, **override) -> dict:
    """Ours and the authors' loop on the same tape: the largest differences and the raw results
    (``dtype`` float64: both networks converted after ``build_trainer`` and every draw cast)."""
    run, datasets = run_block(kind, seed=seed, **override)
    rng = np.random.default_rng(seed)
    src, tgt = (rng.integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2))
    cl = run["speed"]["channels_last"]
    cast = None if dtype == torch.float32 else dtype
    q = Recorder(ImageSampler(tgt, "cpu", cl), cast)
    noise = clean = None
    if kind == "generation":
        p = NoiseSampler(run["noise"], "cpu", cl)
        p.latent = clean = Recorder(p.latent, cast)
    else:
        clean = Recorder(ImageSampler(src, "cpu", cl), cast)
        p = DegradingSampler(clean, datasets[run["source"]]["degrade"])
        p.noise = noise = Recorder(p.noise, cast)
    tr = build_trainer(run, p, q, "cpu")
    tr.T.to(dtype)
    tr.f.to(dtype)
    G, psi = (net.to(dtype) for net in reference_nets(kind))
    links = linked_parameters([tr.T, tr.f], [G, psi])
    with torch.no_grad():
        for _, ours, theirs in links:
            theirs.copy_(ours)
    rows = []
    tr.run(STEPS, on_log=rows.append, progress=False)

    # the tape: per step our trainer drew the f-step's X then its Y and the k_t T-steps' X in one
    # draw, in its order (potential first: the f-step's draws come first)
    k_t = run["k_t"]
    f_at, t_at = (0, 1) if run["order"] == "potential_first" else (1, 0)
    as_input = (lambda x: x.reshape(len(x), -1)) if kind == "generation" else (lambda x: x)  # noqa: E731
    tape = loops.Tape()
    assert len(clean.calls) == 2 * STEPS and len(q.calls) == STEPS
    for s in range(STEPS):
        e = noise.calls[2 * s: 2 * s + 2] if noise is not None and noise.calls else [None, None]
        tape.psi_x.append([as_input(clean.calls[2 * s + f_at])])
        tape.psi_e.append([e[f_at]])
        tape.psi_y.append([q.calls[s]])
        tape.g_x.append([as_input(x) for x in clean.calls[2 * s + t_at].split(BATCH)])
        tape.g_e.append(list(e[t_at].split(BATCH)) if e[t_at] is not None else [None] * k_t)
        tape.g_y.append([q.calls[s]] * k_t)  # any Y: it only enters mean psi(Y), without gradient
        assert len(tape.g_x[-1]) == k_t == KINDS[kind]["k_t"]  # the authors' K_G
    G_opt, psi_opt = loops.adam_pair(G, psi, run["optim"]["lr_t"])
    Q = loops.q_generation if kind == "generation" else loops.q_identity
    ref = loops.otm(G, psi, G_opt, psi_opt, tape, Q, REFERENCE[kind], KINDS[kind].get("gradient_optimality", 0))

    diffs = {name: (ours.double() - theirs.double()).abs().max().item() for name, ours, theirs in links}

    def rel(a: float, b: float) -> float:
        return abs(a - b) / max(1.0, abs(b))

    theirs = [{"loss_f": e["psi_loss"][0] - e["psi_dot"][0], "loss_t": float(np.mean(np.add(e["G_loss"], e["G_psi_y"]))),
               "cost": -float(np.mean(e["G_dot"])), "grad_optimality": e["go"][0]} for e in ref]
    keys = [k for k in ("loss_f", "loss_t", "cost", "grad_optimality") if k in rows[0]]
    per_step = [{k: rel(r[k], e[k]) for k in keys} for r, e in zip(rows, theirs)]
    return {"rows": rows, "ref": ref, "per_step": per_step, "k_t": k_t, "lr": run["optim"]["lr_t"],
            "loss": {k: max(d[k] for d in per_step) for k in keys},
            "weights": max(diffs.values()), "worst": max(diffs.items(), key=lambda t: t[1])}


@pytest.mark.parametrize("kind", list(KINDS))
def test_two_iterations_equal_the_authors(kind):
    """float64: G's and ψ's weights and every logged loss after 2 iterations equal OTM's loop on the same inputs."""
    c = compare(kind, dtype=torch.float64)
    print(kind, {k: f"{v:.1e}" for k, v in c["loss"].items()}, f"weights {c['weights']:.1e} ({c['worst'][0]})")
    assert len(c["rows"]) == len(c["ref"]) == STEPS
    assert all(len(e["G_loss"]) == KINDS[kind]["k_t"] and len(e["psi_loss"]) == 1 for e in c["ref"])
    for key, d in c["loss"].items():
        assert d < F64_LOSS, (key, c["loss"])
    assert c["weights"] < F64_WEIGHTS, c["worst"]
    if kind == "generation":  # the term is on, logged, and is the authors'
        assert set(c["loss"]) == {"loss_f", "loss_t", "cost", "grad_optimality"}
        assert all(r["grad_optimality"] > 0 for r in c["rows"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_fp32_losses_equal_the_authors_and_weights_within_adams_steps(kind):
    """fp32, the pipeline's CPU precision (module docstring: why the weights only within Adam's steps)."""
    c = compare(kind)
    print(kind, [{k: f"{v:.1e}" for k, v in d.items()} for d in c["per_step"]],
          f"weights {c['weights']:.1e} ({c['worst'][0]})")
    for key, d in c["per_step"][0].items():
        assert d < F32_FIRST, (key, c["per_step"])
    for key, d in c["loss"].items():
        assert d < (F32_GENERATION if kind == "generation" else F32_RESTORATION), (key, c["per_step"])
    assert c["weights"] <= 2 * c["lr"] * c["k_t"] * STEPS, c["worst"]


def test_the_comparison_covers_moving_weights_and_losses():
    """The 2 iterations move the losses (the equality is not of the initial state)."""
    for kind in KINDS:
        c = compare(kind, dtype=torch.float64)
        assert c["rows"][0]["loss_f"] != c["rows"][1]["loss_f"]
        first = c["ref"][0]["G_loss"]
        assert first[0] != first[1]  # the first G-step changed G


@pytest.mark.parametrize("kind, override", [
    ("generation", {"order": "map_first"}),
    ("generation", {"gradient_optimality": 0}),
    ("denoise", {"order": "map_first"}),
    ("denoise", {"cost": {"name": "strong", "scaling": "half_mean"}}),
])
def test_each_otm_setting_is_needed(kind, override):
    """With one of OTM's settings reverted to NOT's in our run block (the reference stays OTM's,
    on the same inputs), the float64 weights and losses no longer agree."""
    c = compare.__wrapped__(kind, SEED, torch.float64, **override)
    assert c["weights"] > 100 * F64_WEIGHTS and max(c["loss"].values()) > 10 * F64_LOSS, (c["loss"], c["weights"])


def test_the_trainer_refuses_what_it_cannot_do():
    """The term needs the inner-product cost; several processes cannot double-backward through DDP;
    hand-written MLP steps do not take OTM's settings (autograd instead)."""
    from notpipe.core.costs import StrongQuadratic
    from notpipe.core.trainer import NOTTrainer

    T, f = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)), nn.Sequential(nn.Linear(2, 4), nn.ReLU(),
                                                                                      nn.Linear(4, 1))
    opt = lambda m: torch.optim.Adam(m.parameters())  # noqa: E731
    sample = lambda n, g: torch.randn(n, 2, generator=g)  # noqa: E731
    with pytest.raises(ValueError, match="gradient_optimality applies to the inner-product form"):
        NOTTrainer(T, f, StrongQuadratic("sum"), sample, sample, opt(T), opt(f), gradient_optimality=1.0)
    tr = NOTTrainer(T, f, StrongQuadratic("sum", "inner"), sample, sample, opt(T), opt(f), order="potential_first",
                    gradient_optimality=1.0, batch=4)
    assert tr._manual is None  # autograd
    with pytest.raises(ValueError, match="gradient_optimality \\(OTM\\) is not supported on several processes"):
        tr.distribute(T, f, 0, 2)
    with pytest.raises(ValueError, match="unknown order"):
        NOTTrainer(T, f, StrongQuadratic("sum"), sample, sample, opt(T), opt(f), order="psi_first")
