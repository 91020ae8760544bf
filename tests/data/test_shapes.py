"""notpipe.data.shapes: the synthetic discs -> squares pair and its attribute measurement."""

import numpy as np
import pytest

from notpipe.data import shapes


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_measure_recovers_the_drawn_attributes(shape):
    imgs, attrs = shapes.generate(shape, 100, 32, seed=3)
    m = shapes.measure(imgs)
    assert np.abs(m.cx - attrs.cx).max() < 0.6 and np.abs(m.cy - attrs.cy).max() < 0.6
    fill = 1.0 if shape == "square" else np.pi / 4
    assert abs(m.fill.mean() - fill) < 0.05
    # anti-aliased edges blend towards white: interior colour within a few units on average
    assert np.abs(m[["red", "green", "blue"]].to_numpy() - attrs[["red", "green", "blue"]].to_numpy()).mean() < 20


def test_generation_is_deterministic_and_domains_differ():
    a, _ = shapes.generate("circle", 5, 16, 0)
    b, _ = shapes.generate("circle", 5, 16, 0)
    c, _ = shapes.generate("square", 5, 16, 0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == (5, 16, 16, 3)


def test_attribute_errors_separate_good_and_bad_maps():
    circles, attrs = shapes.generate("circle", 200, 32, 0)
    ideal = shapes.render("square", attrs, 32)  # the optimal map: same centre, size, colour
    random_target, _ = shapes.generate("square", 200, 32, 1)
    good = shapes.attribute_errors(circles, ideal)
    bad = shapes.attribute_errors(circles, random_target)
    assert good["centroid_px"] < 0.5 and good["colour"] < 10 and good["fill_out"] > 0.95
    assert bad["centroid_px"] > 5 and bad["colour"] > 80
    # float NCHW in [-1, 1] (what maps output) measures the same as uint8
    as_float = ideal.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    assert shapes.attribute_errors(circles, as_float)["centroid_px"] == pytest.approx(good["centroid_px"], abs=1e-3)
