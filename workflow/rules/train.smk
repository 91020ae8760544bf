# Image NOT training: one job per run; holds the `gpu` resource, `gpus` of the run (CPU when the
# job gets gpu=0 or no CUDA device is visible); the job claims its devices (gpu_slots).
# Rerunning resumes from results/train/{run}/checkpoints/.


rule train:
    input:
        # the source and target manifests (a generation run, source noise, has the target only)
        unpack(lambda w: run_manifests(w.run)),
    output:
        final=L.final("{run}"),
        log_csv=L.train_log("{run}"),
        # T-only snapshots for evaluation (every snapshot_every f-steps and the last)
        snapshots=directory(L.snapshots("{run}")),
    params:
        run=lambda w: get_train_params(w.run),
        # grid settings only change the pictures drawn during training: a param derived
        # from the output is no rerun trigger, so editing them does not retrain
        grid=lambda w, output: {k: RUNS[w.run][k] for k in GRID_KEYS},
        # TensorBoard on/off: the same (no retrain when only logging changes)
        tracking=lambda w, output: {k: RUNS[w.run][k] for k in TRACKING_KEYS},
        data_dir=DATA,
    resources:
        # a run with gpus: N trains on N processes (DDP) and holds N devices
        gpu=lambda w: RUNS[w.run]["gpus"],
    log:
        L.log("train", "{run}.log"),
    benchmark:
        L.benchmark("train", "{run}.tsv")
    threads: config["images"]["threads"]
    conda:
        ENV
    script:
        "../scripts/train.py"
