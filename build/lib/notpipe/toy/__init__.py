"""Toy stage (workflow/rules/toy.smk): NOT on 2-D and Gaussian problems, checked against exact discrete OT (POT) and closed forms.

``setup`` builds and trains one experiment, ``metrics`` evaluates it, ``samplers``
and ``models`` are the distributions and MLPs, ``discrete_ot`` wraps POT.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ToySetup": "setup", "build": "setup", "train": "setup", "load_trained": "setup",
    "evaluate": "metrics", "modes_covered": "metrics", "plot_samples": "metrics",
    "SAMPLERS": "samplers", "Sampler": "samplers", "make_sampler": "samplers",
    "VectorMap": "models", "VectorPotential": "models",
})
