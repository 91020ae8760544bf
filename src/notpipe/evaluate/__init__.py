"""Evaluation stage (workflow/rules/evaluate.smk): FID/KID with clean-fid's networks, LPIPS, transport cost, shape attributes.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "EVAL_SEED_OFFSET": "snapshot", "evaluate_snapshot": "snapshot", "reference": "snapshot", "curve": "aggregate", "summary": "aggregate", "baselines": "baseline_maps", "extractor_from_config": "snapshot", "lpips_from_config": "snapshot",
    "MissingWeightsError": "fid", "FeatureExtractor": "fid", "build_extractor": "fid", "compute_fid_kid": "fid", "reference_stats": "fid",
    "build_lpips": "lpips", "lpips_content": "lpips", "lpips_diversity": "lpips",
})
