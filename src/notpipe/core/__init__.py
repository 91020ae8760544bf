"""Method code shared by the toy and the image track: the one trainer, costs, optimisers, checkpoints, fingerprints, noise.

Stage-free: nothing here knows about config files, paths or Snakemake.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "NOTTrainer": "trainer", "NonFiniteLossError": "trainer",
    "Cost": "costs", "StrongQuadratic": "costs", "WeakQuadratic": "costs", "KernelEnergy": "costs", "GammaSchedule": "costs", "make_cost": "costs",
    "FlatAdam": "optim", "make_adam": "optim",
    "UnsafeCheckpointError": "checkpoint", "atomic_save": "checkpoint", "latest_checkpoint": "checkpoint", "resume": "checkpoint",
    "FingerprintMismatch": "fingerprint",
    "GaussianNoise": "noise", "ImageNoise": "noise",
})
