"""Download one data set archive: resumable (HTTP Range), retried, sha256-verified.

Command line: python workflow/scripts/data_download.py URL DEST [--sha256 HEX] [--offline]
"""

import argparse

from notpipe.data.download import fetch
from notpipe.stage import entry


def main(url: str, dest: str, sha256: str | None = None, checksums: str | None = None,
         offline: bool = False, retries: int = 5, progress: bool = True) -> None:
    fetch(url, dest, sha256=sha256, checksums=checksums, offline=offline, retries=retries,
          progress=progress)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="http(s) URL of the archive")
    p.add_argument("dest", help="where to store it (a .part file is kept while downloading)")
    p.add_argument("--sha256", help="expected sha256 (hex)")
    p.add_argument("--checksums", help="JSON file recording the sha256 of every file seen")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument("--retries", type=int, default=5)
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(
        url=s.params.url, dest=s.output[0], sha256=s.params.sha256, checksums=s.params.checksums,
        offline=s.params.offline, retries=s.params.retries), smk, torch_threads=False)
