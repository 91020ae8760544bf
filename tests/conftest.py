from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def repo() -> Path:
    return REPO


def tiny_experiment(**over) -> dict:
    """A validated toy experiment small enough for unit tests."""
    from notpipe.config import validate_config

    exp = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"},
           "cost": {"name": "strong"}, "steps": 20, "batch": 16, "k_t": 2,
           "log_every": 5, "checkpoint_every": 10, "model": {"hidden_t": [16], "hidden_f": [16]}}
    exp.update(over)
    cfg = validate_config({"toy": {"experiments": {"t": exp}}})
    return cfg["toy"]["experiments"]["t"]

