"""notpipe: a reproducible pipeline for Neural Optimal Transport (Korotin et al., ICLR 2023)."""

__version__ = "0.1.0"
