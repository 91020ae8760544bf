"""report/rulegraph.dot (drawn as report/rulegraph.png) is the workflow's current rule graph."""

import re

from snakemake_runner import REPO, run_snakemake

#: the command that redraws both files (docs/contributing.md shows it); `all report/toy.pdf`
#: keeps the report rules on a machine without TeX, where `all` alone stops at the figures
REDRAW = ("snakemake --rulegraph dot all report/toy.pdf --configfile configs/toy.yaml > report/rulegraph.dot "
          "&& dot -Tpng report/rulegraph.dot -o report/rulegraph.png")


def edges(dot: str) -> set[tuple[str, str]]:
    labels = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, flags=re.M))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}


def test_the_committed_rule_graph_is_current(tmp_path):
    for name in ("configs", "config.yaml"):
        (tmp_path / name).symlink_to(REPO / name)
    now = edges(run_snakemake("--rulegraph", "dot", "all", "report/toy.pdf", "--configfile", "configs/toy.yaml",
                              cwd=tmp_path).stdout)
    assert ("report_includes", "report") in now and ("toy_train", "toy_evaluate") in now
    drawn = edges((REPO / "report" / "rulegraph.dot").read_text())
    assert drawn == now, f"report/rulegraph.dot is stale; redraw it from the repository root: {REDRAW}"


def test_the_docs_show_the_redraw_command():
    assert REDRAW in (REPO / "docs" / "contributing.md").read_text()
