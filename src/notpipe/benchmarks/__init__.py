"""The fault campaign's modules (``faults*``), run by ``benchmarks/faults.py``.

The speed benchmarks' harness (timing helpers, the authors'-style reference loops, the image
benchmark) lives outside the package, in ``benchmarks/harness/``.
"""
