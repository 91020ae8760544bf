"""Data stage (rules in workflow/rules/data.smk): registry, resumable download, preprocessing, synthetic shapes, the memmap loader.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DatasetError": "datasets", "DEFAULT_DATASETS": "datasets", "resolve_datasets": "datasets", "sources": "datasets",
    "DownloadError": "download", "fetch": "download",
    "PrepareError": "prepare",
    "attribute_errors": "shapes", "measure": "shapes",
    "ImageSampler": "loader", "load_split": "loader", "to_float": "loader", "to_uint8": "loader",
})
