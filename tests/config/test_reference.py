"""docs/configuration.md is the schema's reference, regenerated whenever the schema changes."""

import re
from pathlib import Path

from notpipe.config import load_schema
from notpipe.config.reference import COMMAND, render

REPO = Path(__file__).resolve().parents[2]


def _properties(node, out, path=""):
    """Every (path, key, node) of a ``properties`` mapping anywhere in the schema."""
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items():
            out.append((path, key, sub))
        for key, sub in node.items():
            _properties(sub, out, f"{path}/{key}")
    elif isinstance(node, list):
        for sub in node:
            _properties(sub, out, path)
    return out


def test_docs_configuration_md_is_current():
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page == render(), f"docs/configuration.md is out of date: regenerate it with `{COMMAND}`"


def test_every_key_is_a_row_with_a_description():
    page = render()
    rows = [line for line in page.splitlines()  # key | type | default | description
            if line.startswith("| `") and len(re.split(r"(?<!\\)\|", line)) == 6]
    keys = _properties(load_schema(), [])
    assert len(rows) == len(keys)  # each key of each block once
    for path, key, node in keys:
        assert any(r.startswith(f"| `{key}` |") for r in rows), (path, key)
        assert node.get("description") or "$ref" in node and "description" in load_schema()["$defs"][
            node["$ref"].rsplit("/", 1)[-1]], f"schema.yaml{path}.{key}: add a description (it is the reference)"
    undescribed = [r for r in rows if r.rstrip().endswith("|  |")]
    assert not undescribed, undescribed[:3]
