"""The device of a train or evaluation job: a claimed GPU slot (:mod:`notpipe.core.gpu_slots`,
held until the process exits) when a GPU is wanted and present, else the CPU."""

from __future__ import annotations

import logging
import os

import torch

from notpipe.core import gpu_slots

log = logging.getLogger(__name__)


def _claim(want_gpu: bool, n: int):
    """``n`` GPU slots (:mod:`notpipe.core.gpu_slots`, held until the process exits) when a GPU
    is wanted and CUDA is present; None (the CPU) otherwise."""
    return gpu_slots.claim_for_job(n, log=log.info) if want_gpu and torch.cuda.is_available() else None


def pick_device(want_gpu: bool) -> torch.device:
    """The claimed CUDA device (one free slot among the visible devices) when a GPU is wanted
    and present, else the CPU."""
    claim = _claim(want_gpu, 1)
    if claim is None:
        return torch.device("cpu")
    torch.cuda.set_device(claim.indices[0])
    return torch.device(f"cuda:{claim.indices[0]}")


def pick_devices(want_gpu: bool, n: int) -> bool:
    """For a run on ``n`` processes: claim ``n`` GPU slots and restrict ``CUDA_VISIBLE_DEVICES``
    to them (the ranks, started afterwards, use ``cuda:LOCAL_RANK``); True when on CUDA."""
    claim = _claim(want_gpu, n)
    if claim is None:
        return False
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claim.entries)
    return True
