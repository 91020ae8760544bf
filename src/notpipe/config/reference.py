"""The configuration reference, generated from ``schema.yaml``: every key, its type, default
and description, one table per block.

    python -m notpipe.config.reference > docs/configuration.md

A test fails when ``docs/configuration.md`` differs from this output, so a schema change
comes with the regenerated page.
"""

from __future__ import annotations

import json
import sys

from notpipe.config import SAMPLER_KEYS, load_schema

COMMAND = "python -m notpipe.config.reference > docs/configuration.md"

INTRO = f"""\
# Configuration reference

<!-- Generated from src/notpipe/config/schema.yaml by `{COMMAND}`. Do not edit by hand. -->

A config is a YAML file. `config.yaml` is read when no `--configfile` is given;
`--configfile FILE` replaces it (the two are not merged), and several files after one
`--configfile` are merged in order, the last one winning (`configs/overlays/`). Every
block below lists all of its keys: an unknown key is an error, and a key left out takes the
default shown. Snakemake checks the whole config before any job starts and reports every
problem at once, each naming its key. `notpipe doctor --configfile FILE` checks a config
against this machine. Names in CAPITALS (`NAME`) are yours to choose.
"""


def _ref_name(node: dict) -> str | None:
    ref = node.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/$defs/") else None


def _number(x) -> str:
    return json.dumps(x) if not isinstance(x, float) or x != int(x) or abs(x) < 1e4 else f"{x:.4g}"


def _bounds(node: dict) -> str:
    out = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            out.append(f"{sign} {_number(node[key])}")
    return ", ".join(out)


class Reference:
    """Walks the schema from the top; each block (a ``$defs`` entry or an inline mapping) is one table."""

    def __init__(self, schema: dict):
        self.schema, self.defs = schema, schema.get("$defs", {})
        self.blocks: dict[str, dict] = {}  # anchor -> {"paths": [...], "node": ..., "order": n}

    def block(self, node: dict, path: str, name: str | None = None) -> str:
        """Register the block at ``path``; its anchor (``name`` of a $defs entry, else the path)."""
        anchor = (name or path).replace(".", "-").replace("_", "-").lower()
        entry = self.blocks.setdefault(anchor, {"paths": [], "node": node, "name": name})
        if path not in entry["paths"]:
            entry["paths"].append(path)
            for key, sub in node.get("properties", {}).items():
                self.type_of(sub, f"{path}.{key}" if path else key)
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                self.type_of(extra, f"{path}.NAME")
        return anchor

    def type_of(self, node: dict, path: str) -> str:
        """The type column of ``node`` (registering the blocks it leads to)."""
        name = _ref_name(node)
        if name:
            target = self.defs[name]
            if "properties" in target or "additionalProperties" in target:
                anchor = self.block(target, path, name)
                return f"mapping ([{name}](#{anchor}))"
            return self.type_of(target, path)
        if "oneOf" in node or "anyOf" in node:
            return " or ".join(self.type_of(alt, path) for alt in node.get("oneOf") or node["anyOf"])
        if "enum" in node:
            return "one of " + ", ".join(f"`{json.dumps(v)}`" if not isinstance(v, str) else f"`{v}`"
                                         for v in node["enum"])
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind else []
        words = []
        for k in kinds:
            if k == "array":
                items = node.get("items", {})
                inner = self.type_of(items, path + "[]") if items else "values"
                n, most = node.get("minItems"), node.get("maxItems")
                if n and n == most:
                    words.append(f"list of {n} × {inner}")
                else:
                    words.append(f"list of {inner}" + (f" (at least {n})" if n else ""))
            elif k == "object":
                extra = node.get("additionalProperties")
                if "properties" in node:
                    anchor = self.block(node, path)
                    words.append(f"mapping ([{path}](#{anchor}))")
                elif isinstance(extra, dict):
                    inner = self.type_of(extra, f"{path}.NAME")
                    words.append(f"mapping of NAME to {inner}")
                else:
                    words.append("mapping")
            elif k == "null":
                words.append("null")
            else:
                words.append(k)
        text = " or ".join(words) or "any"
        bounds = _bounds(node)
        return f"{text} ({bounds})" if bounds else text

    def rows(self, node: dict, path: str) -> list[str]:
        required = set(node.get("required", []))
        out = ["| key | type | default | description |", "|---|---|---|---|"]
        for key, sub in node.get("properties", {}).items():
            where = f"{path}.{key}" if path else key
            ref = self.defs.get(_ref_name(sub) or "", {})
            desc = sub.get("description") or ref.get("description", "")
            if "default" in sub:
                default = f"`{json.dumps(sub['default'], ensure_ascii=False)}`"
            else:
                default = "required" if key in required else "–"
            cells = [f"`{key}`", self.type_of(sub, where), default, " ".join(str(desc).split())]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return out

    def render(self) -> str:
        top = self.block(self.schema, "", "top-level")
        parts = [INTRO]
        for anchor, entry in self.blocks.items():
            paths = ", ".join(f"`{p}`" for p in entry["paths"]) if entry["paths"] != [""] else "the file itself"
            title = "top level" if anchor == top else entry["name"] or entry["paths"][0]
            parts.append(f'<a id="{anchor}"></a>\n\n## {title}\n')
            desc = entry["node"].get("description")
            where = f"Keys of {paths}." + (f" {' '.join(str(desc).split())}" if desc else "")
            parts.append(where + "\n")
            if "properties" in entry["node"]:
                parts.append("\n".join(self.rows(entry["node"], entry["paths"][0])) + "\n")
            else:
                extra = entry["node"].get("additionalProperties", {})
                parts.append(f"Each `NAME` is a {self.type_of(extra, entry['paths'][0] + '.NAME')}.\n")
            if entry["name"] == "sampler":
                parts.append(sampler_table())
        return "\n".join(parts)


def sampler_table() -> str:
    """The keys each sampler reads besides ``name``; the config refuses any other."""
    lines = ["Each sampler reads only its own keys; another key is refused with one line.\n",
             "| sampler | its keys |", "|---|---|"]
    lines += [f"| `{name}` | " + ", ".join(f"`{k}`" for k in sorted(keys)) + " |" for name, keys in SAMPLER_KEYS.items()]
    return "\n".join(lines) + "\n"


def render(schema: dict | None = None) -> str:
    """The Markdown page (``docs/configuration.md``)."""
    return Reference(schema or load_schema()).render()


if __name__ == "__main__":
    sys.stdout.write(render())
