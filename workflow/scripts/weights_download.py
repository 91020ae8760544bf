"""Download one FID Inception / LPIPS backbone weight file: resumable, retried, sha256 recorded,
torch.hub hash prefix checked (notpipe.evaluate.weights.fetch_weights).

Command line: python workflow/scripts/weights_download.py URL DEST [--checksums JSON] [--offline]
"""

import argparse

from notpipe.evaluate.weights import fetch_weights
from notpipe.stage import entry


def main(url: str, dest: str, checksums: str | None = None, offline: bool = False,
         retries: int = 5, progress: bool = True) -> None:
    fetch_weights(url, dest, checksums=checksums, offline=offline, retries=retries, progress=progress)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="http(s) URL of the weight file")
    p.add_argument("dest", help="where to store it, under its torch.hub name (a .part file is kept while downloading)")
    p.add_argument("--checksums", help="JSON file recording the sha256 of every file seen")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument("--retries", type=int, default=5)
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: {
        "url": s.params.url, "dest": s.output[0], "checksums": s.params.checksums,
        "offline": s.params.offline, "retries": s.params.retries}, smk, torch_threads=False)
