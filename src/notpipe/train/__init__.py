"""Image training stage (workflow/rules/train.smk): the authors' U-Net and ResNet_D with the one trainer.

``run`` builds, trains, snapshots and reloads a run; ``models`` holds the networks.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ImageSetup": "run", "pick_device": "run", "pick_devices": "run", "build_models": "run", "build": "run", "build_trainer": "run", "model_args": "run", "MODEL_ARGS": "run", "stored_model_args": "run", "OldCheckpoint": "run", "images_per_step": "run", "train": "run", "load_map": "run", "save_grid": "run", "snapshot_steps": "run", "snapshot_path": "run", "publish_snapshots": "run", "manifests": "run", "run_fingerprint": "run",
    "UNet": "models", "ResNetD": "models", "count_parameters": "models", "conv_flops": "models",
})
