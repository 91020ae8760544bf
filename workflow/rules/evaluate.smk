# Evaluation: FID/KID (clean-fid), LPIPS, transport cost (and shape attributes) per kept
# snapshot of each run; one job per (run, snapshot). Jobs hold the `gpu` resource too.


rule eval_reference:
    input:
        manifest=f"{DATA}/{{dataset}}_{{size}}/manifest.json",
    output:
        f"{RESULTS}/eval/refstats/{{dataset}}_{{size}}_test_{FID_TAG}.npz",
    params:
        eval=config["eval"],
        data_dir=lambda w, input: str(Path(input.manifest).parent.parent),
    resources:
        gpu=1,
    log:
        f"{LOGS}/eval/refstats_{{dataset}}_{{size}}.log",
    benchmark:
        f"{BENCH}/eval/refstats_{{dataset}}_{{size}}.tsv"
    threads: config["eval"]["threads"]
    conda:
        ENV
    script:
        "../scripts/eval_reference.py"


rule eval_snapshot:
    input:
        snapshots=rules.train.output.snapshots,
        ref=lambda w: refstats_path(RUNS[w.run]["target"], RUNS[w.run]["image_size"]),
    output:
        f"{RESULTS}/eval/{{run}}/steps/step_{{step}}.csv",
    params:
        # derived from the declared input (the train rule's snapshots/ folder)
        snapshot=lambda w, input: f"{input.snapshots}/step_{w.step}.pt",
        eval=config["eval"],
        data_dir=DATA,
        images=lambda w: L.eval_images(w.run, w.step) if config["eval"]["save_images"] else None,
        run=lambda w: get_run_trajectory(w.run),
    resources:
        gpu=1,
    log:
        f"{LOGS}/eval/{{run}}_step_{{step}}.log",
    benchmark:
        f"{BENCH}/eval/{{run}}_step_{{step}}.tsv"
    threads: config["eval"]["threads"]
    conda:
        ENV
    script:
        "../scripts/eval_snapshot.py"


rule eval_curve:
    input:
        lambda w: [eval_step_path(w.run, s) for s in eval_steps(w.run)],
    output:
        curve=f"{RESULTS}/eval/{{run}}/curve.csv",
        metrics=f"{RESULTS}/eval/{{run}}/metrics.csv",
    log:
        f"{LOGS}/eval/{{run}}_curve.log",
    conda:
        ENV
    script:
        "../scripts/eval_curve.py"


rule eval_summary:
    input:
        metrics=expand(f"{RESULTS}/eval/{{run}}/metrics.csv", run=list(RUNS)),
        published=PUBLISHED,
    output:
        f"{RESULTS}/eval/summary.csv",
    params:
        runs=RUNS,
    log:
        f"{LOGS}/eval/summary.log",
    conda:
        ENV
    script:
        "../scripts/eval_summary.py"
