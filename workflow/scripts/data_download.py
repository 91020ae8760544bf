"""Download one data set archive: resumable (HTTP Range), retried, sha256-verified (and checked
against its published MD5 where the registry pins one), bounded in size, time and rate; two
processes downloading the same URL take turns.

Command line: python workflow/scripts/data_download.py URL DEST [--sha256 HEX] [--md5 HEX] [--offline]
"""

import argparse

from notpipe.data.download import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MIN_RATE,
    config_options,
    fetch,
)
from notpipe.stage import entry


def main(url: str, dest: str, sha256: str | None = None, checksums: str | None = None,
         offline: bool = False, retries: int = 5, progress: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
         deadline: float = DEFAULT_DEADLINE, min_rate: float = DEFAULT_MIN_RATE, lock_wait: float = 7200.0,
         md5: str | None = None) -> None:
    # checksums are keyed by URL: two URLs that end in the same file name never share an entry
    fetch(url, dest, sha256=sha256, md5=md5, checksums=checksums, checksum_key=url, offline=offline,
          retries=retries, progress=progress, max_bytes=max_bytes, deadline=deadline, min_rate=min_rate,
          lock_wait=lock_wait)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="http(s) URL of the archive")
    p.add_argument("dest", help="where to store it (a .part file is kept while downloading)")
    p.add_argument("--sha256", help="expected sha256 (hex)")
    p.add_argument("--md5", help="published MD5 (hex), checked before the sha256 is recorded")
    p.add_argument("--checksums", help="JSON file recording the sha256 of every URL seen")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--max-bytes", dest="max_bytes", type=int, default=DEFAULT_MAX_BYTES, help="size cap")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, help="seconds, retries included")
    p.add_argument("--min-rate", dest="min_rate", type=float, default=DEFAULT_MIN_RATE, help="bytes/s")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    # offline, retries, the limits and the published MD5 come from the config, not from params:
    # changing them must not make Snakemake delete a finished download to run the job again (the
    # data stage checks the MD5 again before it reads the file)
    entry(main, _parser(), lambda s: dict(
        url=s.params.url, dest=s.output[0], sha256=s.params.sha256, checksums=s.params.checksums,
        **config_options(s.config, s.params.url)), smk, torch_threads=False)
