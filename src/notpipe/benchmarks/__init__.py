"""What ``benchmarks/`` measures with: timing and memory helpers (``measure``), the
authors'-style reference loops (``reference``) and the image benchmark (``image``).

The speed scripts in ``benchmarks/`` are command lines around these modules (nanoGPT's
``bench.py`` pattern: they import the library's builder, they do not re-implement it),
and ``tests/benchmarks`` imports them directly.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "timed": "measure", "sync": "measure", "device_name": "measure", "peak_memory": "measure",
    "process_peak_rss": "measure", "peak_flops": "measure", "fmt_mem": "measure",
    "image_loop": "reference", "ImageReference": "reference", "toy_loop": "reference", "Replay": "reference",
    "Sizes": "image", "Opts": "image", "build_ours": "image", "check_losses": "image",
    "time_ours": "image", "time_reference": "image", "time_loader": "image",
})
