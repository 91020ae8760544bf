"""Fault kinds 26-29 (downloads, a shared data_dir, two suites, config bombs): every case survives."""

import pytest

import fault_campaign as faults
from fault_campaign import inputs as I


@pytest.mark.parametrize("kind,cases", [
    ("hostile_downloads", I.DOWNLOAD_CASES), ("shared_data_dir", I.SHARED_CASES),
    ("suite_conflict", I.SUITE_CASES), ("config_bombs", I.CONFIG_CASES)])
def test_every_case_survives_with_one_line_and_nothing_lost(kind, cases, tmp_path):
    tally = faults.run_kind(faults.kinds()[kind], len(cases), seed=1, work=tmp_path)
    assert tally.tried == len(cases) and not tally.failures, tally.failures
    assert tally.survived == tally.tried and tally.lost == 0
    assert faults.kinds()[kind].trials == len(cases)  # the default campaign runs each case once


def test_the_bomb_is_real():
    """The alias bomb is small but expands to 9**9 values (what config_bombs guards)."""
    import yaml

    text = I.bomb()
    assert len(text) < 800
    node = yaml.compose(text)
    sizes: dict[int, int] = {}

    def size(n):
        if id(n) not in sizes:
            kids = [] if isinstance(n, yaml.ScalarNode) else n.value if isinstance(n, yaml.SequenceNode) \
                else [x for kv in n.value for x in kv]
            sizes[id(n)] = 1 + sum(size(k) for k in kids)
        return sizes[id(n)]
    assert size(node) > 9 ** 9
