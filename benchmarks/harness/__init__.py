"""What ``benchmarks/`` measures with (not part of the installed ``notpipe`` package).

* ``measure``: timing between device synchronisations, peak memory, device name, peak FLOP/s;
* ``reference``: the authors'-style training loops (image notebook loop, toy loops);
* ``image``: the image benchmark's sizes, our speed switches, our trainer from
  :func:`notpipe.train.build_trainer`, the timings and the loss check.

The scripts in ``benchmarks/`` import it as ``harness`` (Python puts the script's folder on
``sys.path``); the tests find it through ``pythonpath`` in ``pyproject.toml``.
"""
