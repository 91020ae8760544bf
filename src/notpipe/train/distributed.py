"""One image run on several processes: ``torch.distributed`` data parallelism.

A run with ``gpus: N`` has a train job that holds ``gpu=N``. :func:`launch` starts
N processes with torch.distributed's elastic launcher (what ``torchrun`` runs) on
127.0.0.1: NCCL on CUDA (one claimed device per rank), gloo on the CPU. Each rank
runs :func:`notpipe.train.run.train` with the same seeded generator:

* every rank draws the global batch (and its z) and keeps its slice
  (:meth:`NOTTrainer.distribute`), so N processes compute what one process
  computes on the whole batch;
* T and f are each wrapped in their own ``DistributedDataParallel``; BatchNorm
  becomes ``SyncBatchNorm`` on CUDA and :class:`DistBatchNorm2d` on the CPU
  (torch's SyncBatchNorm refuses CPU tensors), so the batch statistics are those
  of the global batch;
* rank 0 alone writes checkpoints, snapshots, grids and ``log.csv`` (atomically),
  the others wait at a barrier; a resumed run loads the checkpoint rank 0 chose
  into every rank.

A rank that dies (SIGKILL included) makes the launcher stop the others; the job
fails with :class:`RankFailed`, one line naming the rank and the signal, and a
rerun resumes from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

log = logging.getLogger(__name__)


class RankFailed(RuntimeError):
    """A process of a data-parallel run failed; the message names the rank and the cause."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def _in_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_parallel() -> bool:
    """Inside a process group of more than one process."""
    return _in_group() and dist.get_world_size() > 1


def is_main() -> bool:
    """Rank 0 of a data-parallel run, or a single process."""
    return not _in_group() or dist.get_rank() == 0


def barrier() -> None:
    if _in_group():
        dist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process)."""
    if not _in_group():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over all ranks.

    The per-channel sums and sums of squares (float64) go through the autograd-aware
    ``all_reduce``, so the gradient is that of one process on the whole batch. Used on
    the CPU (gloo); CUDA runs use torch's ``SyncBatchNorm``. Evaluation uses the
    running statistics as plain BatchNorm does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _in_group()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xd = x.double()
        count = torch.full((1,), x.numel() // c, dtype=torch.float64, device=x.device)
        with warnings.catch_warnings():  # deprecated, but the functional collectives have no autograd all_reduce
            warnings.simplefilter("ignore", FutureWarning)
            sums = all_reduce(torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:c] / n
        var = sums[c:2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        shape = (1, c, 1, 1)
        y = (xd - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        y = y.to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Every BatchNorm2d of ``module`` (in place, parameters and buffers shared) made global-batch."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = DistBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child, cuda)
    return module


def wrap(trainer) -> None:
    """Make ``trainer`` one rank of the initialised process group: synced BatchNorm, T and f
    each in their own ``DistributedDataParallel``, this rank's slice of every batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    cuda = trainer.device.type == "cuda"
    ids = [trainer.device.index] if cuda else None
    T, f = sync_batchnorm(trainer.T, cuda), sync_batchnorm(trainer.f, cuda)
    # synced BatchNorm keeps the buffers equal on every rank: no buffer broadcast per forward
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else {"broadcast_buffers": False})
    trainer.distribute(DDP(T, device_ids=ids, **no_sync), DDP(f, device_ids=ids, **no_sync),
                       dist.get_rank(), dist.get_world_size())


def _setup_logging(log_path: str | None, rank: int) -> None:
    fmt = f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s"
    stream = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 (lives with the process)
    logging.basicConfig(level=logging.INFO, format=fmt, stream=stream, force=True)
    if log_path and rank == 0:  # rank 0's warnings (e.g. a collapse) reach the terminal too, one line each
        from notpipe.stage import TerminalWarnings

        logging.getLogger("notpipe").addHandler(TerminalWarnings(sys.stderr, log_path))


def weights_digest(*modules: nn.Module) -> str:
    """sha256 of the modules' parameters and buffers (equal on every rank of a healthy run)."""
    h = hashlib.sha256()
    for m in modules:
        for key, t in m.state_dict().items():
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def init_rank(cuda: bool, threads: int, log_path: str | None = None) -> torch.device:
    """In a process the launcher started: logging, threads, the device, the process group."""
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    _setup_logging(log_path, rank)
    torch.set_num_threads(max(1, threads))
    if cuda:
        torch.cuda.set_device(local)
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    log.info("rank %d of %d: pid %d, device %s, %d threads", rank, dist.get_world_size(), os.getpid(),
             device, threads)
    return device


def worker(run: dict, name: str, data_dir: str, out_dir: str, cuda: bool, threads: int,
           log_path: str | None, progress: bool) -> dict:
    """One rank of :func:`launch`. Returns its final f-step and :func:`weights_digest` of T and f."""
    device = init_rank(cuda, threads, log_path)
    rank = dist.get_rank()
    try:
        from notpipe.train.run import train

        tr = train(run, name, data_dir, out_dir, device, progress=progress and rank == 0).trainer
        return {"step": tr.step, "weights_sha256": weights_digest(tr.T, tr.f)}
    except Exception:
        log.exception("rank %d failed", rank)
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(fn, args: tuple, nproc: int, *, name: str, hint: str = "") -> dict[int, object]:
    """``fn(*args)`` on ``nproc`` processes started by torch.distributed's elastic launcher (what
    ``torchrun`` runs: c10d rendezvous on 127.0.0.1, a free port, no restarts); ``{rank: result}``.

    A failed rank raises :class:`RankFailed` naming it and the cause (signal or exit code),
    followed by ``hint``; the launcher has stopped the other ranks by then.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    cfg = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"notpipe-{name}-{os.getpid()}",
                       rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                       monitor_interval=0.2, start_method="spawn")
    # the launcher logs each failure with its own traces; RankFailed below says it in one line
    quiet = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        return elastic_launch(cfg, fn)(*args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        why = (f"killed by {failure.signal_name()}" if failure.exitcode < 0
               else f"exit code {failure.exitcode}")
        raise RankFailed(f"{name}: rank {rank} of {nproc} processes failed ({why}); the other ranks were "
                         f"stopped. {hint}".rstrip()) from None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def launch(run: dict, name: str, data_dir: str | Path, out_dir: str | Path, nproc: int, *, cuda: bool,
           threads: int = 1, log_path: str | None = None, progress: bool = False) -> dict[int, dict]:
    """Train ``run`` on ``nproc`` processes (:func:`run_ranks`); ``{rank: {"step", "weights_sha256"}}``.

    ``cuda``: one CUDA device per rank (the visible devices, which the caller restricted
    to the claimed ones); else gloo on the CPU with ``threads`` torch threads per rank.
    """
    log.info("%s: %d processes (%s), torch.distributed elastic launch on 127.0.0.1", name, nproc,
             "NCCL, one GPU each" if cuda else f"gloo on the CPU, {threads} threads each")
    hint = (f"Its traceback, if any, is in {log_path or 'the job log'}. Rerunning the same command resumes "
            f"from the last checkpoint in {Path(out_dir) / 'checkpoints'}")
    return run_ranks(worker, (run, name, str(data_dir), str(out_dir), cuda, threads, log_path, progress), nproc,
                     name=name, hint=hint)
