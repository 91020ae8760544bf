"""The authors'-style training loops our trainers are timed and checked against.

* :func:`image_loop` / :class:`ImageReference`: the image loop as the authors'
  ``NOT_training_strong`` / ``NOT_training_weak`` notebooks write it -- fp32, NCHW,
  ``torch.optim.Adam(foreach=False)``, ``freeze``/``unfreeze`` every step (``freeze``
  also puts the frozen network in eval mode, so T's BatchNorm uses and keeps its running
  statistics in the f-step), K_T T-steps
  each on a fresh X batch from a DataLoader over a float host tensor sent with
  ``.to(device)``, the weak cost as ``X.repeat`` + a noise channel +
  ``mse(X, mean_z T) + (1-γ-1/Z)·var_z T``, ``.item()`` logging every step and
  ``gc.collect(); torch.cuda.empty_cache()`` three times per step;
* :func:`toy_loop`: a plain 2-D loop in the same style (``nn.Sequential`` MLPs,
  ``torch.optim.Adam``, ``F.mse_loss``, one sampler call per batch).

``sz`` is any object with the benchmark's sizes (``batch``, ``k_t``, ``size``,
``z_size``, ``gamma``, ``weak``, ``t_base``, ... as :class:`harness.image.Sizes`).
"""

from __future__ import annotations

import gc
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from notpipe.data.loader import to_float
from notpipe.train.models import ResNetD, UNet

class Replay:
    """Hands out pre-drawn batches in order; ``take(n)`` concatenates as many as make ``n`` rows."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches, self.i = batches, 0

    def take(self, n: int) -> torch.Tensor:
        out, got = [], 0
        while got < n:
            out.append(self.batches[self.i])
            got += len(self.batches[self.i])
            self.i += 1
        if got != n:
            raise RuntimeError(f"Replay: asked for {n} rows, batches give {got}")
        return out[0] if len(out) == 1 else torch.cat(out)


def freeze(model: nn.Module) -> None:
    """Authors' ``tools.freeze``: no gradients, eval mode."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()


def unfreeze(model: nn.Module) -> None:
    """Authors' ``tools.unfreeze``."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.train(True)


class LoaderSampler:
    """Authors' ``distributions.LoaderSampler``: next DataLoader batch, ``[:size].to(device)``."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device
        self.it = iter(loader)

    def sample(self, size: int = 5) -> torch.Tensor:
        assert size <= self.loader.batch_size
        try:
            batch, _ = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return self.sample(size)
        if len(batch) < size:
            return self.sample(size)
        return batch[:size].to(self.device)



class ReplaySampler:
    """Authors'-style ``.sample(size)`` over a :class:`Replay` (the loss check)."""

    def __init__(self, replay: Replay, device):
        self.replay, self.device = replay, device

    def sample(self, size: int) -> torch.Tensor:
        return self.replay.take(size).to(self.device)


def reference_samplers(arrays: dict, sz, device: torch.device, workers: int):
    """X, Y samplers as the authors build them: float [-1, 1] NCHW TensorDataset, DataLoader(shuffle)."""
    from torch.utils.data import DataLoader, TensorDataset

    out = []
    for i, side in enumerate(("source", "target")):
        data = to_float(torch.from_numpy(np.array(arrays[side])))  # authors keep the float set in RAM
        ds = TensorDataset(data, torch.zeros(len(data)))
        g = torch.Generator().manual_seed(sz.seed + 1 + i)
        loader = DataLoader(ds, batch_size=sz.batch, shuffle=True, num_workers=workers, generator=g,
                            persistent_workers=workers > 0)
        out.append(LoaderSampler(loader, device))
    return out


def image_loop(T: nn.Module, f: nn.Module, T_opt, f_opt, X_sampler, Y_sampler, sample_z, sz,
               steps: int, device: torch.device, gc_every_step: bool = True) -> list[tuple[float, float]]:
    """``steps`` f-steps of the authors' notebook loop; returns per-step (mean T loss, f loss).

    ``sample_z(shape)`` draws the noise (authors: ``torch.randn(shape, device='cuda') * Z_STD``).
    ``gc_every_step=False`` drops the authors' ``gc.collect()`` / ``torch.cuda.empty_cache()``
    calls (diagnostic row of the ablation).
    """
    cuda = device.type == "cuda" and gc_every_step
    collect = gc.collect if gc_every_step else (lambda: None)
    B, ZS, IMG_SIZE, gamma = sz.batch, sz.z_size, sz.size, sz.gamma
    logs = []
    for step in range(steps):
        # T optimization
        unfreeze(T)
        freeze(f)
        T_sum = torch.zeros((), device=device)
        for t_iter in range(sz.k_t):
            T_opt.zero_grad()
            if sz.weak:
                X = X_sampler.sample(B)[:, None].repeat(1, ZS, 1, 1, 1)
                with torch.no_grad():
                    Z = sample_z((B, ZS, 1, IMG_SIZE, IMG_SIZE))
                    XZ = torch.cat([X, Z], dim=2)
                T_XZ = T(XZ.flatten(start_dim=0, end_dim=1)).permute(1, 2, 3, 0).reshape(
                    3, IMG_SIZE, IMG_SIZE, -1, ZS).permute(3, 4, 0, 1, 2)
                T_loss = F.mse_loss(X[:, 0], T_XZ.mean(dim=1)).mean() - \
                    f(T_XZ.flatten(start_dim=0, end_dim=1)).mean() + \
                    T_XZ.var(dim=1).mean() * (1 - gamma - 1. / ZS)
            else:
                X = X_sampler.sample(B)
                T_X = T(X)
                T_loss = F.mse_loss(X, T_X).mean() - f(T_X).mean()
            T_loss.backward()
            T_opt.step()
            T_sum += T_loss.detach()
        del T_loss, X
        collect()
        if cuda:
            torch.cuda.empty_cache()

        # f optimization
        freeze(T)
        unfreeze(f)
        X = X_sampler.sample(B)
        with torch.no_grad():
            if sz.weak:
                Z = sample_z((B, 1, X.size(2), X.size(3)))
                T_X = T(torch.cat([X, Z], dim=1))
            else:
                T_X = T(X)
        Y = Y_sampler.sample(B)
        f_opt.zero_grad()
        f_loss = f(T_X).mean() - f(Y).mean()
        f_loss.backward()
        f_opt.step()
        logs.append((T_sum.item() / sz.k_t, f_loss.item()))  # the per-step logging (wandb.log)
        del f_loss, Y, X, T_X
        collect()
        if cuda:
            torch.cuda.empty_cache()
        collect()
        if cuda:
            torch.cuda.empty_cache()
    return logs


class ImageReference:
    """The reference contender: its own T (``UNet(3 + ZC, 3)`` for weak, as the authors), f, Adams."""

    def __init__(self, sz, init: dict, device: torch.device, X_sampler, Y_sampler, sample_z=None,
                 gc_every_step: bool = True):
        self.sz, self.device, self.gc_every_step = sz, device, gc_every_step
        self.T = UNet(3 + (1 if sz.weak else 0), 3, base=sz.t_base, depth=sz.t_depth)
        self.f = ResNetD(sz.size, 3, nf=sz.f_nf, nf_max=sz.f_max)
        self.T.load_state_dict(init["T"])
        self.f.load_state_dict(init["f"])
        self.T.to(device)
        self.f.to(device)
        self.T_opt = torch.optim.Adam(self.T.parameters(), lr=sz.lr, weight_decay=sz.weight_decay, foreach=False)
        self.f_opt = torch.optim.Adam(self.f.parameters(), lr=sz.lr, weight_decay=sz.weight_decay, foreach=False)
        self.X_sampler, self.Y_sampler = X_sampler, Y_sampler
        self.sample_z = sample_z or (lambda shape: torch.randn(shape, device=device) * sz.z_std)
        self.step = 0

    def run(self, steps: int) -> list[tuple[float, float]]:
        logs = image_loop(self.T, self.f, self.T_opt, self.f_opt, self.X_sampler, self.Y_sampler,
                          self.sample_z, self.sz, steps, self.device, self.gc_every_step)
        self.step += steps
        return logs



def toy_loop(steps: int, batch: int = 64, k_t: int = 10, hidden: int = 100, seed: int = 0) -> float:
    """The plain loop; returns seconds."""
    torch.manual_seed(seed)

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, o))

    T, f = mlp(2, 2), mlp(2, 1)
    opt_t = torch.optim.Adam(T.parameters(), lr=1e-4, weight_decay=1e-10)
    opt_f = torch.optim.Adam(f.parameters(), lr=1e-4, weight_decay=1e-10)
    from notpipe.toy.samplers import make_sampler  # here: the image benchmark does not need it
    P, Q = make_sampler({"name": "gaussian", "dim": 2}), make_sampler({"name": "moons"})
    t0 = time.perf_counter()
    for _ in range(steps):
        for p in f.parameters():
            p.requires_grad_(False)
        for _ in range(k_t):
            X = P(batch)
            TX = T(X)
            loss_t = F.mse_loss(X, TX) - f(TX).mean()
            opt_t.zero_grad()
            loss_t.backward()
            opt_t.step()
        for p in f.parameters():
            p.requires_grad_(True)
        X, Y = P(batch), Q(batch)
        with torch.no_grad():
            TX = T(X)
        loss_f = f(TX).mean() - f(Y).mean()
        opt_f.zero_grad()
        loss_f.backward()
        opt_f.step()
        _ = loss_t.item(), loss_f.item()  # the usual per-step logging sync
    return time.perf_counter() - t0


def authors_toy_2d(X_sampler, Y_sampler, steps: int, *, dim: int = 2, zd: int = 2, z_std: float = 0.1,
                   z_size: int = 4, hidden: int = 100, lr: float = 1e-4, batch: int = 64, t_iters: int = 10,
                   seed: int = 0, generator: torch.Generator | None = None) -> nn.Sequential:
    """The authors' ``NOT_toy_2D.ipynb`` (cells 1-6) as written: weak cost with γ = 1,
    ``nn.Sequential`` MLPs of three hidden layers, ``weights_init_mlp`` (Kaiming-normal
    fan_in), Adam(lr, weight_decay=1e-10), ``T_ITERS`` T-steps each on fresh X and Z, then
    one f-step; ``torch.manual_seed(seed)`` before the networks are built, as their cell 2.

    ``X_sampler``, ``Y_sampler``: ``(n, generator) -> (n, dim)`` (our samplers, so both loops
    see the same laws). Returns the trained T, which takes ``cat([x, z])``.
    """
    torch.manual_seed(seed)

    def weights_init_mlp(m):
        if m.__class__.__name__.find("Linear") != -1:
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    H = hidden
    T = nn.Sequential(nn.Linear(dim + zd, H), nn.ReLU(True), nn.Linear(H, H), nn.ReLU(True),
                      nn.Linear(H, H), nn.ReLU(True), nn.Linear(H, dim))
    f = nn.Sequential(nn.Linear(dim, H), nn.ReLU(True), nn.Linear(H, H), nn.ReLU(True),
                      nn.Linear(H, H), nn.ReLU(True), nn.Linear(H, 1))
    T.apply(weights_init_mlp)
    f.apply(weights_init_mlp)
    T_opt = torch.optim.Adam(T.parameters(), lr=lr, weight_decay=1e-10)
    f_opt = torch.optim.Adam(f.parameters(), lr=lr, weight_decay=1e-10)
    g = generator or torch.Generator().manual_seed(seed)
    for _ in range(steps):
        unfreeze(T)
        freeze(f)
        for _ in range(t_iters):
            T_opt.zero_grad()
            X = X_sampler(batch, g).reshape(-1, 1, dim).repeat(1, z_size, 1)
            with torch.no_grad():
                Z = torch.randn(batch, z_size, zd) * z_std
                XZ = torch.cat([X, Z], dim=2)
            T_XZ = T(XZ.flatten(start_dim=0, end_dim=1)).permute(1, 0).reshape(dim, -1, z_size).permute(1, 2, 0)
            T_loss = F.mse_loss(X[:, 0], T_XZ.mean(dim=1)).mean() - \
                f(T_XZ.flatten(start_dim=0, end_dim=1)).mean() - T_XZ.var(dim=1).mean() / z_size
            T_loss.backward()
            T_opt.step()
        freeze(T)
        unfreeze(f)
        X = X_sampler(batch, g)
        with torch.no_grad():
            Z = torch.randn(batch, zd) * z_std
            T_XZ = T(torch.cat([X, Z], dim=1))
        Y = Y_sampler(batch, g)
        f_opt.zero_grad()
        f_loss = f(T_XZ).mean() - f(Y).mean()
        f_loss.backward()
        f_opt.step()
    return T


def authors_toy_2d_for(exp: dict, X_sampler, Y_sampler, steps: int | None = None,
                       generator: torch.Generator | None = None) -> nn.Sequential:
    """:func:`authors_toy_2d` with the sizes, seed and steps of a validated toy experiment block."""
    m = exp["model"]
    return authors_toy_2d(X_sampler, Y_sampler, exp["steps"] if steps is None else steps, zd=m["z_dim"],
                          z_std=m["z_std"], z_size=exp["cost"]["z_size"], hidden=m["hidden_t"][0],
                          lr=exp["optim"]["lr_t"], batch=exp["batch"], t_iters=exp["k_t"], seed=int(exp["seed"]),
                          generator=generator)


def into_vector_map(T: nn.Sequential, vector_map) -> None:
    """Copy the authors' ``nn.Sequential`` T into our :class:`~notpipe.toy.models.VectorMap`
    (the same Linear layers in the same order, input ``cat([x, z])``), so our evaluation
    measures their trained map."""
    theirs = [m for m in T if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for a, b in zip(vector_map.net.layers, theirs, strict=True):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
