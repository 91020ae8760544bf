"""notpipe.train.collapse: the spread of T falls for a constant map, not for the identity."""

import logging

import pandas as pd
import torch
from conftest import tiny_image_run

from notpipe import train as images
from notpipe.train.collapse import CollapseMonitor, spread


class Constant(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x) + 0.3


def _monitor(shapes_data, T):
    setup = images.build(tiny_image_run(), shapes_data)
    setup.trainer.T = T
    return CollapseMonitor(setup.trainer, setup.source_test, setup.target_test, 0.2, "r")


def test_spread_is_the_mean_pairwise_distance():
    y = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert spread(y) == (5 + 0 + 5) / 3


def test_constant_map_is_flagged_and_the_identity_is_not(shapes_data, caplog):
    row = {"step": 7}
    with caplog.at_level(logging.WARNING):
        assert _monitor(shapes_data, Constant())(row) < 1e-6
    assert "possible collapse at f-step 7" in caplog.text and row["spread_threshold"] == 0.2
    caplog.clear()
    row = {"step": 8}
    assert _monitor(shapes_data, torch.nn.Identity())(row) > 0.5  # discs are as spread as squares
    assert "collapse" not in caplog.text


def test_training_logs_the_spread_and_the_loss_figure_shows_it(shapes_data, tmp_path):
    from notpipe.figures.losses import figure_losses

    images.train(tiny_image_run(), "r", shapes_data, tmp_path, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["spread"].between(0, 10).all() and (log["spread_threshold"] == 0.2).all()
    fig = figure_losses(log, "r")
    assert len(fig.axes) == 4 and fig.axes[-1].get_title() == "output spread"
    low = log.assign(spread=0.01)
    assert "possible collapse from f-step" in figure_losses(low, "r")._suptitle.get_text()
