# Data stage: download (resumable, checksummed) -> decode/crop/resize/split -> uint8 .npy + manifest.
# `snakemake --cores 2 results/data/shoes_128/manifest.json` builds just that data set.


rule data_download:
    output:
        L.raw("{file}"),
    params:
        # only what decides the file's content: a change of data.offline, data.retries or a
        # download limit must not make Snakemake delete and fetch a finished download again
        url=lambda w: DOWNLOADS[w.file]["url"],
        sha256=lambda w: DOWNLOADS[w.file]["sha256"],
        checksums=L.checksums(),
    log:
        L.data_log("download_{file}.log"),
    threads: 1
    conda:
        ENV
    script:
        "../scripts/data_download.py"


rule data_prepare:
    input:
        lambda w: dataset_inputs(w.dataset, w.size),
    output:
        train=L.split("{dataset}", "{size}", "train"),
        test=L.split("{dataset}", "{size}", "test"),
        manifest=L.manifest("{dataset}", "{size}"),
    params:
        spec=lambda w: DATASETS[w.dataset],
        raw_dir=L.raw(),
        offline=config["data"]["offline"],
        max_bad_fraction=config["data"]["max_bad_fraction"],
    log:
        L.data_log("{dataset}_{size}.prepare.log"),
    benchmark:
        L.data_benchmark("{dataset}_{size}.prepare.tsv")
    threads: config["data"]["threads"]
    conda:
        ENV
    script:
        "../scripts/data_prepare.py"
