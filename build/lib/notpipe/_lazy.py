"""Lazy re-exports for the stage subpackages (PEP 562).

``from notpipe.evaluate import curve`` imports only the module that defines
``curve``: a table job never imports torch or clean-fid because the package
also re-exports the FID code. Each subpackage's ``__init__`` names its public
API in one ``{name: submodule}`` table.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, names: dict[str, str]):
    """``(__getattr__, __dir__, __all__)`` for a package that re-exports ``names``."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
            globals_ = importlib.import_module(package).__dict__
            globals_[name] = value  # cache: the next access is a plain attribute
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(names) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__, list(names)
