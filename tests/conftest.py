from pathlib import Path

import pytest
import torch
from http_server import http_server  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection or weight download fails the test (the code must stay offline)."""
    import socket

    import cleanfid.inception_pytorch as cf_incep

    def boom(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(cf_incep, "load_state_dict_from_url", boom)  # clean-fid's own hub call


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



def tiny_image_run(**over) -> dict:
    """A validated image run on the 16-px shapes pair with tiny networks."""
    from notpipe.config import validate_config

    run = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16,
           "cost": {"name": "strong"}, "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8},
           "steps": 4, "batch": 4, "k_t": 2, "log_every": 2, "checkpoint_every": 2, "grid_every": 2,
           "grid_inputs": 3, "grid_z": 2}
    run.update(over)
    cfg = validate_config({"images": {"runs": {"r": run}}})
    return cfg["images"]["runs"]["r"]


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """``data_dir`` holding shapes_circles_16 and shapes_squares_16 (60 images each)."""
    from notpipe.data.datasets import resolve_datasets
    from notpipe.data.prepare import prepare

    d = tmp_path_factory.mktemp("data")
    specs = resolve_datasets({"shapes_circles": {"n": 60}, "shapes_squares": {"n": 60}})
    for name in ("shapes_circles", "shapes_squares"):
        prepare(name, specs[name], 16, d / f"{name}_16", d / "raw", progress=False)
    return d
