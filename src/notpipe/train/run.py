"""Image stage: NOT between two prepared image data sets with the one trainer.

``build`` turns one validated run block (``images.runs.NAME``) into a ready
:class:`~notpipe.core.trainer.NOTTrainer`: U-Net T and ResNet_D f (or OTM's networks,
``model.arch``: :mod:`notpipe.train.otm_models`), the cost with the authors' per-pixel
scaling, Adam (fused), optional MultiStepLR, the γ warm-up, OTM's step order and
gradient-optimality term, and :class:`~notpipe.data.loader.ImageSampler` s over the
memory-mapped train splits (wrapped by :class:`~notpipe.data.fresh_degrade.DegradingSampler`
for a source degraded per batch).
``train`` runs it with atomic checkpoints, automatic resume, ``log.csv`` and
sample grids; ``load_map`` rebuilds a trained map for evaluation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from notpipe.core import checkpoint as ckpt
from notpipe import environment
from notpipe.core import fingerprint
from notpipe.core.costs import Cost, GammaSchedule, make_cost
from notpipe.core.noise import GaussianNoise, ImageNoise
from notpipe.core.optim import make_adam
from notpipe.core.trainer import NOTTrainer
from notpipe import seeds
from notpipe.data.datasets import NOISE_SOURCE, data_sides, dataset_dir
from notpipe.data.fresh_degrade import DegradedSplit, DegradingSampler, is_fresh
from notpipe.data.loader import ImageSampler, load_split, to_float, to_uint8
from notpipe.data.noise_source import NoiseInputs, NoiseSampler
from notpipe.io import atomic_path
from notpipe.paths import snapshot_steps  # noqa: F401  (part of this API)
from notpipe.train import distributed, tracking
from notpipe.train.devices import pick_device, pick_devices  # noqa: F401  (part of this API)
from notpipe.train.collapse import CollapseMonitor
from notpipe.train import otm_models
from notpipe.train.grey import GreyMap, GreyPotential
from notpipe.train.models import ResNetD, UNet

log = logging.getLogger(__name__)

from notpipe.seeds import (
    TRAIN_GRID as GRID_SEED_OFFSET,  # fixed grid noise, never the training stream
)


def build_models(model: dict, cost: Cost, size: int,
                 source_noise: dict | None = None) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """T, f and the noise sampler of a run (noise is None for deterministic maps).

    ``model.arch`` chooses the networks: the U-Net and ResNet_D (``unet``) or OTM's
    (:func:`notpipe.train.otm_models.build`; ``source_noise``: a generation run's noise block).
    """
    arch = model.get("arch", "unet")
    if arch != "unet":
        if cost.stochastic:
            raise ValueError(f"model.arch {arch}: OTM's maps are deterministic; the {cost.name} cost draws z")
        return (*otm_models.build(arch, size, model, source_noise), None)
    noise_ch = latent = 0
    noise = None
    if cost.stochastic:
        if model["latent_dim"]:
            latent = model["latent_dim"]
            noise = GaussianNoise(latent, model["z_std"])
        else:
            noise_ch = model["noise_channels"]
            noise = ImageNoise(noise_ch, size, model["z_std"])
    ch = int(model.get("channels", 3))  # 1: grey maps on RGB stores (notpipe.train.grey)
    T = UNet(ch, ch, base=model["t_base"], noise_channels=noise_ch, latent_dim=latent, depth=model["t_depth"])
    f = ResNetD(size, ch, nf=model["f_nf"], nf_max=model["f_max"])
    if ch == 1:
        return GreyMap(T), GreyPotential(f), noise
    return T, f, noise


@dataclass
class ImageSetup:
    trainer: NOTTrainer
    source_test: np.ndarray
    target_test: np.ndarray
    run: dict  # the run block (training) or its model_args (a map loaded for evaluation)
    images_per_step: int


#: what a checkpoint needs to rebuild its map (nanoGPT's ``model_args``): a schema change
#: elsewhere in the run block (optimiser, speed, logging keys) does not touch old snapshots
MODEL_ARGS = ("source", "target", "image_size", "seed", "cost", "model")
#: model_args of a generation run also carry its noise block (its test inputs are rebuilt from it)
NOISE_ARGS = ("noise",)


def model_args(run: dict) -> dict:
    """The few values of a run block that rebuild its T: data, size, cost, networks, seed."""
    missing = [k for k in MODEL_ARGS if k not in run]
    if missing:
        raise KeyError(f"run block lacks {', '.join(missing)}: cannot describe its map")
    return {**{k: run[k] for k in MODEL_ARGS + NOISE_ARGS if k in run}, "channels_last": bool(run.get("speed", {}).get("channels_last", True))}


def build_trainer(run: dict, sample_p, sample_q, device: str | torch.device = "cpu", *,
                  init: dict | None = None, adam: str = "torch") -> NOTTrainer:
    """The trainer of one run block on the given samplers (``(n, generator) -> batch``).

    ``init`` (state dicts ``{"T", "f"}``) replaces the seeded initialisation; ``adam``
    is :func:`~notpipe.core.optim.make_adam`'s ``impl`` (the benchmark's reference uses ``"loop"``).
    """
    device = torch.device(device)
    seed, size = int(run["seed"]), int(run["image_size"])
    torch.manual_seed(seed)  # network initialisation
    cost = make_cost(run["cost"])
    T, f, noise = build_models(run["model"], cost, size, run.get("noise"))
    if init is not None:
        T.load_state_dict(init["T"])
        f.load_state_dict(init["f"])
    sp = run["speed"]
    channels_last = bool(sp["channels_last"])  # faster on CUDA and on CPU (docs/notes/2026-11-23-benchmarks.md)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    T, f = T.to(device, memory_format=fmt), f.to(device, memory_format=fmt)
    o = run["optim"]
    betas = tuple(float(b) for b in o["betas"])  # YAML's [0, 0.9]: torch's Adam wants floats
    opt_t = make_adam(T, o["lr_t"], betas, o["weight_decay"], adam)
    opt_f = make_adam(f, o["lr_f"], betas, o["weight_decay"], adam)
    sched_t = sched_f = None
    if o["milestones"]:
        sched_t = torch.optim.lr_scheduler.MultiStepLR(opt_t, o["milestones"], o["lr_decay"])
        sched_f = torch.optim.lr_scheduler.MultiStepLR(opt_f, o["milestones"], o["lr_decay"])
    if sp["compile"]:
        T, f = torch.compile(T), torch.compile(f)
    return NOTTrainer(
        T, f, cost, sample_p, sample_q, opt_t, opt_f, noise=noise,
        k_t=run["k_t"], batch=run["batch"], device=device, sched_t=sched_t, sched_f=sched_f,
        gamma_schedule=GammaSchedule(cost.gamma_max, run["cost"].get("gamma_warmup", 0)),
        generator=torch.Generator().manual_seed(seed), log_every=run["log_every"],
        autocast_dtype=torch.bfloat16 if sp["precision"] == "bf16" and device.type == "cuda" else None,
        grad_norms=True, k_f=run.get("k_f", 1), gradient_penalty=run.get("gradient_penalty", 0.0),
        order=run.get("order", "map_first"), gradient_optimality=run.get("gradient_optimality", 0.0))


def source_degradation(run: dict, data_dir: str | Path) -> dict | None:
    """The ``degrade`` block of the run's source data set when it is applied per batch
    (``fresh: true``, :mod:`notpipe.data.fresh_degrade`), from its manifest; else None."""
    if run["source"] == NOISE_SOURCE:
        return None
    manifest = dataset_dir(data_dir, run["source"], int(run["image_size"])) / "manifest.json"
    deg = json.loads(manifest.read_text()).get("degrade") if manifest.exists() else None
    return deg if is_fresh(deg) else None


def _splits(args: dict, data_dir: str | Path) -> tuple[dict, dict]:
    """``{"train", "test"}`` memory-mapped arrays of the source and of the target data set. A
    generation run (source noise) has no source train split, and as test split fixed seeded noise
    inputs, as many as the target's test images."""
    size = int(args["image_size"])
    out = {side: {s: load_split(dataset_dir(data_dir, name, size), s) for s in ("train", "test")}
           for side, name in data_sides(args).items()}
    if "source" not in out:
        out["source"] = {"train": None, "test": NoiseInputs(args["noise"], len(out["target"]["test"]),
                                                             int(args["seed"]) + seeds.NOISE_TEST)}
    deg = source_degradation(args, data_dir)
    if deg is not None:  # the clean test half, degraded once per image (float inputs)
        out["source"]["test"] = DegradedSplit(out["source"]["test"], deg)
    return out["source"], out["target"]


def build(run: dict, data_dir: str | Path, device: str | torch.device = "cpu") -> ImageSetup:
    """Networks, samplers, cost, optimisers and trainer of one image run."""
    device = torch.device(device)
    src, tgt = _splits(run, data_dir)
    cl = bool(run["speed"]["channels_last"])
    sample_p = (NoiseSampler(run["noise"], device, cl) if run["source"] == NOISE_SOURCE
                else ImageSampler(src["train"], device, cl))
    deg = source_degradation(run, data_dir)
    if deg is not None:  # degraded anew in every batch, from the trainer's generator
        sample_p = DegradingSampler(sample_p, deg)
    trainer = build_trainer(run, sample_p, ImageSampler(tgt["train"], device, cl), device)
    return ImageSetup(trainer, src["test"], tgt["test"], run, images_per_step(run))


def images_per_step(run: dict) -> int:
    """Images through T per f-step: ``batch * (K_T * |Z_x| + 1)``."""
    return run["batch"] * (run["k_t"] * make_cost(run["cost"]).z_size + 1)


def save_grid(trainer: NOTTrainer, inputs: np.ndarray, z_per_x: int, path: str | Path, seed: int) -> Path:
    """PNG grid: first row the test inputs, then one row per noise draw ``T(x, z_j)``."""
    x = to_float(torch.from_numpy(np.array(inputs))).to(trainer.device)
    ys = trainer.infer(x, z_per_x if trainer.noise is not None else 1, torch.Generator().manual_seed(seed))
    rows = [to_uint8(x)] + [to_uint8(ys[:, j]) for j in range(ys.shape[1])]
    grid = np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)  # columns = inputs
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(grid).save(tmp)
    return Path(path)


def snapshot_path(out_dir: str | Path, step: int) -> Path:
    """A published snapshot: ``snapshots/`` is the train rule's declared ``directory()`` output."""
    return Path(out_dir) / "snapshots" / f"step_{step:08d}.pt"


def _kept_snapshot(out_dir: Path, step: int) -> Path:
    """Where training keeps a snapshot until it publishes ``snapshots/``: inside ``checkpoints/``,
    which Snakemake does not delete before a rerun, so a resumed run keeps its earlier snapshots."""
    return out_dir / "checkpoints" / "snapshots" / f"step_{step:08d}.pt"


def publish_snapshots(out_dir: str | Path, steps: list[int]) -> Path:
    """Make ``snapshots/`` hold exactly the kept snapshots of ``steps`` (hard links, copies where
    links are not possible); the folder appears under its name only when complete."""
    out = Path(out_dir)
    final, tmp = out / "snapshots", out / f".snapshots.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for step in steps:
        src = _kept_snapshot(out, step)
        if not src.is_file():
            raise FileNotFoundError(f"{src}: snapshot of f-step {step} missing; rerun the training "
                                    "(its checkpoints were moved or deleted)")
        try:
            os.link(src, tmp / src.name)
        except OSError:
            shutil.copy2(src, tmp / src.name)
    if final.exists():
        old = out / f".snapshots.{os.getpid()}.old"
        final.rename(old)
        shutil.rmtree(old)
    tmp.rename(final)
    return final


def _write_log(history: list[dict], path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def snapshot(state: dict, run: dict, name: str, fp: dict) -> dict:
    """What evaluation needs of a checkpoint: T (+ BatchNorm statistics), its model_args and fingerprint."""
    return {"T": state["T"], "step": state["step"], "model_args": model_args(run), "name": name,
            "fingerprint": fp}


def manifests(run: dict, data_dir: str | Path) -> dict[str, Path]:
    """The manifest.json of the run's source and target data sets."""
    size = run["image_size"]
    # a generation run's noise is in its fingerprint as run keys
    return {side: dataset_dir(data_dir, name, size) / "manifest.json" for side, name in data_sides(run).items()}


def run_fingerprint(run: dict, data_dir: str | Path) -> dict:
    """Fingerprint of a run: its trajectory keys and the sha256 of its prepared arrays (and the
    source's degradation when the sampler applies it: the arrays are then clean)."""
    deg = source_degradation(run, data_dir)
    return fingerprint.image({**run, "source_degrade": deg} if deg else run, manifests(run, data_dir))


def train(run: dict, name: str, data_dir: str | Path, out_dir: str | Path,
          device: str | torch.device = "cpu", progress: bool = True) -> ImageSetup:
    """Train and write ``final.pt``, ``log.csv``, ``grids/`` and ``snapshots/``.

    Resumes from ``out_dir/checkpoints`` only when the checkpoint was written by the
    same run block on the same prepared arrays (:mod:`notpipe.fingerprint`);
    otherwise checkpoints, snapshots and grids are moved aside and training starts at 0.
    Inside an initialised process group (:mod:`notpipe.train.distributed`) this is one rank:
    rank 0 decides the resume and writes every file, the other ranks follow.
    """
    setup = build(run, data_dir, device)
    tr = setup.trainer
    fp = run_fingerprint(run, data_dir)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    main = distributed.is_main()
    aside = [out / "snapshots", out / "grids", out / tracking.TB_DIR]  # another run's files, on a fresh start
    resumed = main and ckpt.resume(tr, ckpt_dir, fp, run["steps"], name, aside=aside)
    if resumed and tr.step in snapshot_steps(run) and not _kept_snapshot(out, tr.step).exists():
        # killed between a checkpoint and its snapshot (written first since): rebuild it from the checkpoint
        ckpt.atomic_save(snapshot(tr.state_dict(), run, name, fp), _kept_snapshot(out, tr.step))
    if distributed.broadcast(resumed) and not main:  # the checkpoint rank 0 resumed from, on every rank
        tr.load_state_dict(ckpt.latest_checkpoint(ckpt_dir)[1]["trainer"])
    if distributed.is_parallel():
        distributed.wrap(tr)
    grid_x = setup.source_test[: run["grid_inputs"]]
    grid_every = run["grid_every"]
    tracker = tracking.Tracker.for_run(run, out)  # TensorBoard (logging.tensorboard), rank 0 only
    threshold = run.get("logging", {}).get("collapse_threshold", 0.2)
    collapse = (CollapseMonitor(tr, setup.source_test, setup.target_test, threshold, name,
                                seed=run["seed"] + GRID_SEED_OFFSET) if main else None)

    def on_log(row: dict) -> None:
        row["images_per_s"] = row["steps_per_s"] * setup.images_per_step
        if collapse is not None:
            collapse(row)  # row["spread"]: outputs' spread over the targets' (warns below the threshold)
        log.info("%s step %d: loss_t %.4g loss_f %.4g cost %.4g gamma %.3g %.2f step/s %.0f img/s",
                 name, row["step"], row["loss_t"], row["loss_f"], row["cost"], row["gamma"],
                 row["steps_per_s"], row["images_per_s"])
        tracker.scalars(row["step"], row)
        if main and grid_every and (row["step"] % grid_every == 0 or row["step"] == run["steps"]):
            tracker.image(row["step"], save_grid(tr, grid_x, run["grid_z"],
                                                 out / "grids" / f"step_{row['step']:08d}.png",
                                                 run["seed"] + GRID_SEED_OFFSET))

    env = environment.record()

    def full(state: dict) -> dict:  # a resumable checkpoint (final.pt too)
        return {"trainer": state, "model_args": model_args(run), "name": name, "fingerprint": fp,
                "environment": env}

    def save(t: NOTTrainer) -> None:
        if main:
            state = t.state_dict()
            if t.step in snapshot_steps(run):  # before its checkpoint: a checkpoint implies its snapshot
                ckpt.atomic_save(snapshot(state, run, name, fp), _kept_snapshot(out, t.step))
            ckpt.atomic_save(full(state), ckpt.checkpoint_path(ckpt_dir, t.step))
            ckpt.prune(ckpt_dir, run["keep"])
            _write_log(t.history, out / "log.csv")
        distributed.barrier()  # no rank runs ahead of a checkpoint being written

    out.mkdir(parents=True, exist_ok=True)
    log.info("%s: %s -> %s at %d px, cost %s, device %s, %d images/f-step", name, run["source"],
             run["target"], run["image_size"], tr.cost, tr.device, setup.images_per_step)
    try:
        tr.run(run["steps"], on_log=on_log, on_checkpoint=save, checkpoint_every=run["checkpoint_every"],
               progress=progress, desc=name)
    finally:
        tracker.close()
    if not main:
        distributed.barrier()
        return setup
    _write_log(tr.history, out / "log.csv")
    state = tr.state_dict()
    if not _kept_snapshot(out, tr.step).exists():
        ckpt.atomic_save(snapshot(state, run, name, fp), _kept_snapshot(out, tr.step))
    publish_snapshots(out, snapshot_steps(run))
    environment.write(out / "environment.json", env)
    ckpt.atomic_save(full(state), out / "final.pt")
    distributed.barrier()
    return setup


class OldCheckpoint(ValueError):
    """A checkpoint whose map cannot be rebuilt (no model_args, and its run block lacks keys)."""


def stored_model_args(state: dict, path: str | Path) -> dict:
    """``model_args`` of a checkpoint; those written before model_args existed carry the whole run
    block instead, from which the same values are taken."""
    if "model_args" in state:
        return state["model_args"]
    try:
        return model_args(state["run"])
    except KeyError as e:
        raise OldCheckpoint(f"{path}: neither model_args nor a usable run block ({e.args[0]}); retrain it, or "
                            f"add model_args with notpipe.train.model_args(run) and torch.save") from None


def load_map(path: str | Path, data_dir: str | Path, device: str | torch.device = "cpu",
             expected: dict | None = None) -> tuple[ImageSetup, dict]:
    """Rebuild a trained map from a snapshot, a checkpoint or ``final.pt`` (T loaded, in eval mode).

    Only the stored ``model_args`` and the data sets' test splits are used. With ``expected``
    (the run block to evaluate), a map trained by another configuration or on other prepared
    arrays raises :class:`~notpipe.fingerprint.FingerprintMismatch`.
    """
    state = ckpt.load(path)
    if expected is not None:
        fingerprint.require(state, run_fingerprint(expected, data_dir), path)
    args = stored_model_args(state, path)
    device = torch.device(device)
    torch.manual_seed(int(args["seed"]))
    cost = make_cost(args["cost"])
    T, f, noise = build_models(args["model"], cost, int(args["image_size"]), args.get("noise"))
    T.load_state_dict(state["trainer"]["T"] if "trainer" in state else state["T"])
    fmt = torch.channels_last if args["channels_last"] else torch.contiguous_format
    T = T.to(device, memory_format=fmt).eval()
    # a trainer without samplers or optimisers: evaluation only pushes inputs through T
    trainer = NOTTrainer(T, f, cost, None, None, None, None, noise=noise, device=device, batch=1, log_every=1)
    src, tgt = _splits(args, data_dir)
    return ImageSetup(trainer, src["test"], tgt["test"], args, images_per_step=0), state  # 0: not training
