# Report: one rule per figure and table (each rebuildable alone by asking for its file),
# then report/main.pdf compiled by latexmk. Generated LaTeX goes to results/{suite}/report/ (Layout.generated).

_IMAGE_FIGURES = {  # kind -> (named inputs, title)
    "grid": ({"data": L.final("{run}")}, "test inputs (first row) and T(x, z)"),
    "losses": ({"data": L.train_log("{run}")}, "training curves"),
    # the identity map's FID and the floor (eval_baselines, computed for every run) as reference lines
    "fid_curve": ({"data": L.eval_curve("{run}"), "baselines": L.eval_baselines("{run}")},
                  "FID and transport cost over training"),
}

for _kind, (_inputs, _title) in _IMAGE_FIGURES.items():

    rule:
        name:
            f"image_figure_{_kind}"
        input:
            **_inputs,
        output:
            pdf=L.image_figure("{run}", _kind),
            png=report(L.image_figure("{run}", _kind, "png"), caption="../report/images.rst",
                       category="Image translation", subcategory="{run}"),
        params:
            kind=_kind,
            title=f"{{run}}: {_title}",
            data_dir=str(L.data),
            n_inputs=8,
            n_z=4,
            run=(lambda w: get_run_trajectory(w.run)) if _kind == "grid" else None,
        log:
            L.log("figures", "images", f"{{run}}_{_kind}.log"),
        conda:
            ENV
        script:
            "../scripts/image_figure.py"


rule image_figure_tradeoff:
    input:
        L.eval_summary(),
    output:
        pdf=L.figure("images", "tradeoff"),
        png=report(L.figure("images", "tradeoff", "png"), caption="../report/summary.rst", category="Evaluation"),
    params:
        kind="tradeoff",
        title="FID vs transport cost",
    log:
        L.log("figures", "images", "tradeoff.log"),
    conda:
        ENV
    script:
        "../scripts/image_figure.py"


rule image_figure_throughput:
    input:
        [L.train_log(run) for run in RUNS],
    output:
        pdf=L.figure("speed", "throughput"),
        png=report(L.figure("speed", "throughput", "png"), caption="../report/summary.rst", category="Speed"),
    params:
        kind="throughput",
        title="training throughput",
    log:
        L.log("figures", "speed", "throughput.log"),
    conda:
        ENV
    script:
        "../scripts/image_figure.py"


rule report_table_toy:
    input:
        lambda w: [L.toy_summary()] if TOY else [],
    output:
        L.generated("table_toy"),
    params:
        kind="toy",
    log:
        L.log("report", "table_toy.log"),
    conda:
        ENV
    script:
        "../scripts/report_table.py"


rule report_table_images:
    input:
        lambda w: [L.eval_summary()] if RUNS else [],
    output:
        L.generated("table_images"),
    params:
        kind="images",
        generated=lambda w: generated_datasets(DATASETS),  # not real images: the table says so
    log:
        L.log("report", "table_images.log"),
    conda:
        ENV
    script:
        "../scripts/report_table.py"


rule report_table_environment:
    # after every training and evaluation job: it reads the environment.json they wrote
    input:
        [L.toy_model(n) for n in TOY] + [L.final(r) for r in RUNS] + ([L.eval_summary()] if RUNS else []),
    output:
        L.generated("table_environment"),
    params:
        records=[str(Path(L.toy_model(n)).parent / "environment.json") for n in TOY]
        + [str(Path(L.final(r)).parent / "environment.json") for r in RUNS],
    log:
        L.log("report", "table_environment.log"),
    conda:
        ENV
    script:
        "../scripts/report_environment.py"


rule report_includes:
    output:
        [L.generated(f) for f in REPORT_INCLUDES],
    params:
        config=config,
        toy_figures=lambda w: {n: [L.toy_figure(n, k) for k in toy_figure_kinds(n)] for n in TOY},
        sweep_figures=[L.toy_figure(s, "gamma_sweep") for s in TOY_SWEEPS] + TOY_DIM_FIGURES,
        figures_dir=str(L.figures),
    log:
        L.log("report", "includes.log"),
    conda:
        ENV
    script:
        "../scripts/report_includes.py"


rule report:
    input:
        tex=[f"{workflow.basedir}/report/main.tex", f"{workflow.basedir}/report/notpipe.sty"],
        generated=[L.generated(f) for f in REPORT_INCLUDES + ["table_toy", "table_images", "table_environment"]],
        figures=report_figures(),
    output:
        report(L.pdf, caption="../report/pdf.rst", category="Report"),
    params:
        build=lambda w, input: str(Path(input.generated[0]).parent.parent),
    log:
        L.log("report", "latexmk.log"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_compile.py"
