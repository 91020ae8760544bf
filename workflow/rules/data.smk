# Data stage: download (resumable, checksummed) -> decode/crop/resize/split -> uint8 .npy + manifest.
# `snakemake --cores 2 results/data/shoes_128/manifest.json` builds just that data set.


rule data_download:
    output:
        f"{DATA}/raw/{{file}}",
    params:
        url=lambda w: DOWNLOADS[w.file]["url"],
        sha256=lambda w: DOWNLOADS[w.file]["sha256"],
        checksums=f"{DATA}/checksums.json",
        offline=config["data"]["offline"],
        retries=config["data"]["retries"],
    log:
        f"{L.data_logs}/download_{{file}}.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/data_download.py"


rule data_prepare:
    input:
        lambda w: dataset_downloads(w.dataset),
    output:
        train=f"{DATA}/{{dataset}}_{{size}}/train.npy",
        test=f"{DATA}/{{dataset}}_{{size}}/test.npy",
        manifest=f"{DATA}/{{dataset}}_{{size}}/manifest.json",
    params:
        spec=lambda w: DATASETS[w.dataset],
        raw_dir=f"{DATA}/raw",
        offline=config["data"]["offline"],
        max_bad_fraction=config["data"]["max_bad_fraction"],
    log:
        f"{L.data_logs}/{{dataset}}_{{size}}.prepare.log",
    benchmark:
        f"{L.root}/benchmarks/data/{{dataset}}_{{size}}.prepare.tsv"
    threads: config["data"]["threads"]
    conda:
        ENV
    script:
        "../scripts/data_prepare.py"
