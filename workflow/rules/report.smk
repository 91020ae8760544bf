# Report: one rule per figure and table (each rebuildable alone by asking for its file),
# then report/main.pdf compiled by latexmk. Generated LaTeX goes to {RESULTS}/report/.

_IMAGE_FIGURES = {  # kind -> (input, title)
    "grid": (lambda w: f"{RESULTS}/train/{w.run}/final.pt", "test inputs (first row) and T(x, z)"),
    "losses": (lambda w: f"{RESULTS}/train/{w.run}/log.csv", "training curves"),
    "fid_curve": (lambda w: f"{RESULTS}/eval/{w.run}/curve.csv", "FID and transport cost over training"),
}

for _kind, (_input, _title) in _IMAGE_FIGURES.items():

    rule:
        name:
            f"image_figure_{_kind}"
        input:
            _input,
        output:
            pdf=f"{FIGURES}/images/{{run}}_{_kind}.pdf",
            png=report(f"{FIGURES}/images/{{run}}_{_kind}.png", caption="../report/images.rst",
                       category="Image translation", subcategory="{run}"),
        params:
            kind=_kind,
            title=f"{{run}}: {_title}",
            data_dir=DATA,
            n_inputs=8,
            n_z=4,
            run=(lambda w: get_run_trajectory(w.run)) if _kind == "grid" else None,
        log:
            f"{LOGS}/figures/images/{{run}}_{_kind}.log",
        conda:
            ENV
        script:
            "../scripts/image_figure.py"


rule image_figure_tradeoff:
    input:
        f"{RESULTS}/eval/summary.csv",
    output:
        pdf=f"{FIGURES}/images/tradeoff.pdf",
        png=report(f"{FIGURES}/images/tradeoff.png", caption="../report/summary.rst", category="Evaluation"),
    params:
        kind="tradeoff",
        title="FID vs transport cost",
    log:
        f"{LOGS}/figures/images/tradeoff.log",
    conda:
        ENV
    script:
        "../scripts/image_figure.py"


rule image_figure_throughput:
    input:
        [f"{RESULTS}/train/{run}/log.csv" for run in RUNS],
    output:
        pdf=f"{FIGURES}/speed/throughput.pdf",
        png=report(f"{FIGURES}/speed/throughput.png", caption="../report/summary.rst", category="Speed"),
    params:
        kind="throughput",
        title="training throughput",
    log:
        f"{LOGS}/figures/speed/throughput.log",
    conda:
        ENV
    script:
        "../scripts/image_figure.py"


rule report_table_toy:
    input:
        lambda w: [f"{RESULTS}/toy/summary.csv"] if TOY else [],
    output:
        f"{REPORT_BUILD}/generated/table_toy.tex",
    params:
        kind="toy",
    log:
        f"{LOGS}/report/table_toy.log",
    conda:
        ENV
    script:
        "../scripts/report_table.py"


rule report_table_images:
    input:
        lambda w: [f"{RESULTS}/eval/summary.csv"] if RUNS else [],
    output:
        f"{REPORT_BUILD}/generated/table_images.tex",
    params:
        kind="images",
    log:
        f"{LOGS}/report/table_images.log",
    conda:
        ENV
    script:
        "../scripts/report_table.py"


rule report_includes:
    output:
        expand(f"{REPORT_BUILD}/generated/{{f}}.tex", f=REPORT_INCLUDES),
    params:
        config=config,
        toy_figures=lambda w: {n: [f"{FIGURES}/toy/{n}_{k}.pdf" for k in toy_figure_kinds(n)] for n in TOY},
        sweep_figures=[f"{FIGURES}/toy/{s}_gamma_sweep.pdf" for s in TOY_SWEEPS] + TOY_DIM_FIGURES,
        figures_dir=FIGURES,
    log:
        f"{LOGS}/report/includes.log",
    conda:
        ENV
    script:
        "../scripts/report_includes.py"


rule report:
    input:
        tex=[f"{workflow.basedir}/report/main.tex", f"{workflow.basedir}/report/notpipe.sty"],
        generated=expand(f"{REPORT_BUILD}/generated/{{f}}.tex", f=REPORT_INCLUDES + ["table_toy", "table_images"]),
        figures=report_figures(),
    output:
        report(L.pdf, caption="../report/pdf.rst", category="Report"),
    params:
        build=lambda w, input: str(Path(input.generated[0]).parent.parent),
    log:
        f"{LOGS}/report/latexmk.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_compile.py"
