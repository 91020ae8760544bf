"""Toy stage, training: one validated experiment block -> a trained map.

``build`` turns the block into a ready :class:`~notpipe.core.trainer.NOTTrainer`;
``train`` runs it with atomic checkpoints and fingerprint-checked resume;
``load_trained`` rebuilds a trained map for :mod:`notpipe.toy.metrics`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from notpipe.core import checkpoint as ckpt
from notpipe.core import fingerprint
from notpipe.core.costs import Cost, GammaSchedule, make_cost
from notpipe.core.noise import GaussianNoise
from notpipe.core.optim import StepDecay, make_adam
from notpipe.core.trainer import NOTTrainer
from notpipe.io import atomic_path
from notpipe.toy.models import VectorMap, VectorPotential
from notpipe.toy.samplers import Sampler, make_sampler

log = logging.getLogger(__name__)

@dataclass
class ToySetup:
    trainer: NOTTrainer
    source: Sampler
    target: Sampler
    cost: Cost


def build(exp: dict) -> ToySetup:
    """Samplers, networks, cost, optimisers and trainer of one experiment (CPU)."""
    seed = int(exp["seed"])
    torch.manual_seed(seed)  # network initialisation
    source = make_sampler(exp["source"], seed=seed)
    target = make_sampler(exp["target"], seed=seed + 1)
    cost = make_cost(exp["cost"])
    dim = source.sample(1, torch.Generator().manual_seed(0)).shape[1]
    m, o = exp["model"], exp["optim"]
    z_dim = m["z_dim"] if cost.stochastic else 0
    T = VectorMap(dim, m["hidden_t"], z_dim, m["init"])
    f = VectorPotential(dim, m["hidden_f"], m["init"])
    opt_t = make_adam(T, o["lr_t"], o["betas"], o["weight_decay"], o["impl"])
    opt_f = make_adam(f, o["lr_f"], o["betas"], o["weight_decay"], o["impl"])
    sched = {}
    if o["milestones"]:  # step decay of both learning rates (configs/gaussians.yaml: large D)
        sched = {"sched_t": StepDecay(opt_t, o["milestones"], o["lr_decay"]),
                 "sched_f": StepDecay(opt_f, o["milestones"], o["lr_decay"])}
    trainer = NOTTrainer(
        T, f, cost, source, target, opt_t, opt_f, **sched,
        noise=GaussianNoise(z_dim, m["z_std"]) if z_dim else None,
        k_t=exp["k_t"], batch=exp["batch"],
        gamma_schedule=GammaSchedule(cost.gamma_max, exp["cost"].get("gamma_warmup", 0)),
        generator=torch.Generator().manual_seed(seed), log_every=exp["log_every"],
        k_f=exp["k_f"], gradient_penalty=exp["gradient_penalty"], backward=o["backward"],
        ema_decay=exp["ema_decay"])
    return ToySetup(trainer, source, target, cost)


def train(exp: dict, model_path: str | Path, log_csv: str | Path, ckpt_dir: str | Path | None = None,
          keep: int = 2, progress: bool = True, name: str = "toy") -> ToySetup:
    """Train and write the final model (``model_path``) and the training log (``log_csv``).

    Resumes from the newest valid checkpoint in ``ckpt_dir`` only when it was written
    by the same experiment (:mod:`notpipe.fingerprint`); otherwise the old checkpoints
    are moved aside and training starts at step 0.
    """
    setup = build(exp)
    tr = setup.trainer
    fp = fingerprint.toy(exp)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else Path(model_path).parent / "checkpoints"
    ckpt.resume(tr, ckpt_dir, fp, exp["steps"], name)

    def write_log():
        with atomic_path(log_csv, suffix=".csv") as tmp:
            pd.DataFrame(tr.history).to_csv(tmp, index=False)

    def save(t: NOTTrainer):
        ckpt.atomic_save({"trainer": t.state_dict(), "experiment": exp, "fingerprint": fp},
                         ckpt.checkpoint_path(ckpt_dir, t.step))
        ckpt.prune(ckpt_dir, keep)
        write_log()

    Path(log_csv).parent.mkdir(parents=True, exist_ok=True)
    tr.run(exp["steps"], on_checkpoint=save, checkpoint_every=exp["checkpoint_every"],
           progress=progress, desc=name)
    write_log()
    # "T": the map every metric and figure uses (the moving average with ema_decay > 0);
    # "T_last": the last iterate, which the authors evaluate
    ckpt.atomic_save({"T": tr.averaged_T_state(), "T_last": tr.T.state_dict(), "f": tr.f.state_dict(),
                      "experiment": exp, "fingerprint": fp, "step": tr.step, "train_seconds": tr.elapsed},
                     model_path)
    return setup


def load_trained(model_path: str | Path, expected: dict | None = None,
                 last_iterate: bool = False) -> tuple[ToySetup, dict]:
    """Rebuild an experiment from a model file written by :func:`train` (T: the averaged
    map; ``last_iterate``: the last iterate, as the authors evaluate it; a file written
    before ``ema_decay`` existed holds only the last iterate, as ``T``).

    With ``expected`` (the experiment block to evaluate), a model trained by another
    configuration, or for another number of steps, raises
    :class:`~notpipe.fingerprint.FingerprintMismatch`.
    """
    state = ckpt.load(model_path)
    if expected is not None:
        fingerprint.require(state, fingerprint.toy(expected), model_path, expected["steps"])
    setup = build(state["experiment"])
    setup.trainer.T.load_state_dict(state["T_last" if last_iterate and "T_last" in state else "T"])
    setup.trainer.f.load_state_dict(state["f"])
    setup.trainer.T.eval()
    return setup, state
