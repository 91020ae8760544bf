"""Fault kinds 20-25 (hostile inputs): every case of each kind survives, in a few seconds."""

import pytest

import fault_campaign as faults  # benchmarks/fault_campaign (pythonpath in pyproject.toml)
from fault_campaign import hostile as H


@pytest.mark.parametrize("kind,cases", [
    ("weights", H.WEIGHT_CASES), ("hdf5", H.HDF5_CASES), ("archive_bombs", H.BOMB_CASES),
    ("archive_damage", H.DAMAGE_CASES), ("special_files", H.SPECIAL_CASES), ("model_files", H.MODEL_CASES)])
def test_every_hostile_input_is_refused_in_one_line_with_nothing_left(kind, cases, tmp_path):
    tally = faults.run_kind(faults.kinds()[kind], len(cases), seed=1, work=tmp_path)
    assert tally.tried == len(cases) and not tally.failures, tally.failures
    assert tally.survived == tally.tried and tally.lost == 0
    assert faults.kinds()[kind].trials == len(cases)  # the default campaign runs each case once


def test_the_crafted_weight_file_does_run_code_when_loaded(tmp_path):
    """The input is real: torch.jit.load of it writes the marker (what the weights kind guards)."""
    import warnings

    import torch

    marker = tmp_path / "marker"
    H.writes_on_load(tmp_path / "w.pt", marker)
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(tmp_path / "w.pt"))
    assert marker.exists()
