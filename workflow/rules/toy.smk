# Toy stage: NOT on 2-D / Gaussian problems vs exact discrete OT (POT) and closed forms.


rule toy_train:
    output:
        model=f"{RESULTS}/toy/{{name}}/model.pt",
        log_csv=f"{RESULTS}/toy/{{name}}/log.csv",
    params:
        exp=lambda w: TOY[w.name],
    log:
        f"{LOGS}/toy/{{name}}.train.log",
    benchmark:
        f"{BENCH}/toy/{{name}}.train.tsv"
    threads: config["toy"]["threads"]
    conda:
        ENV
    script:
        "../scripts/toy_train.py"


rule toy_evaluate:
    input:
        model=rules.toy_train.output.model,
    output:
        metrics=f"{RESULTS}/toy/{{name}}/metrics.csv",
        samples=f"{RESULTS}/toy/{{name}}/samples.npz",
    params:
        settings={k: config["toy"][k] for k in ("n_eval", "n_plot", "z_eval", "sinkhorn_eps", "emd_max_iter", "eval_draws")},
        exp=lambda w: {**get_toy_trajectory(w.name), "steps": TOY[w.name]["steps"]},
    log:
        f"{LOGS}/toy/{{name}}.evaluate.log",
    benchmark:
        f"{BENCH}/toy/{{name}}.evaluate.tsv"
    threads: 1
    conda:
        ENV
    script:
        "../scripts/toy_evaluate.py"


rule toy_summary:
    input:
        expand(f"{RESULTS}/toy/{{name}}/metrics.csv", name=TOY),
    output:
        f"{RESULTS}/toy/summary.csv",
    params:
        kind="summary",
        gammas=None,
    log:
        f"{LOGS}/toy/summary.log",
    conda:
        ENV
    script:
        "../scripts/toy_table.py"


rule toy_sweep_table:
    input:
        lambda w: [f"{RESULTS}/toy/{n}/metrics.csv" for _, n in TOY_SWEEPS[w.sweep]],
    output:
        f"{RESULTS}/toy/sweeps/{{sweep}}.csv",
    params:
        kind="sweep",
        gammas=lambda w: [g for g, _ in TOY_SWEEPS[w.sweep]],
    log:
        f"{LOGS}/toy/sweep_{{sweep}}.log",
    conda:
        ENV
    script:
        "../scripts/toy_table.py"


# One rule per figure kind (named toy_figure_<kind>): asking for one file rebuilds
# only its chain (train -> evaluate -> figure).
_TOY_FIGURE_SPECS = {
    "scatter": ("samples.npz", "input, target, push-forward"),
    "transport": ("samples.npz", "NOT map vs exact OT plan (one batch)"),
    "one_to_many": ("samples.npz", "several z for fixed x"),
    "losses": ("log.csv", "training curves"),
}

for _kind, (_source, _title) in _TOY_FIGURE_SPECS.items():

    rule:
        name:
            f"toy_figure_{_kind}"
        input:
            f"{RESULTS}/toy/{{name}}/{_source}",
        output:
            pdf=f"{FIGURES}/toy/{{name}}_{_kind}.pdf",
            png=report(f"{FIGURES}/toy/{{name}}_{_kind}.png", caption="../report/toy.rst",
                       category="Toy", subcategory="{name}"),
        params:
            kind=_kind,
            title=f"{{name}}: {_title}",
        log:
            f"{LOGS}/figures/toy/{{name}}_{_kind}.log",
        conda:
            ENV
        script:
            "../scripts/toy_figure.py"


rule toy_figure_gamma_sweep:
    input:
        f"{RESULTS}/toy/sweeps/{{sweep}}.csv",
    output:
        pdf=f"{FIGURES}/toy/{{sweep}}_gamma_sweep.pdf",
        png=report(f"{FIGURES}/toy/{{sweep}}_gamma_sweep.png", caption="../report/sweep.rst",
                   category="Toy", subcategory="gamma sweeps"),
    params:
        kind="gamma_sweep",
        title=lambda w: f"{w.sweep}: modes covered and conditional variance vs gamma",
    log:
        f"{LOGS}/figures/toy/{{sweep}}_gamma_sweep.log",
    conda:
        ENV
    script:
        "../scripts/toy_figure.py"


rule toy_figure_l2_uvp_dim:
    input:
        f"{RESULTS}/toy/summary.csv",
    output:
        pdf=f"{FIGURES}/toy/l2_uvp_vs_dim.pdf",
        png=report(f"{FIGURES}/toy/l2_uvp_vs_dim.png", caption="../report/toy.rst", category="Toy",
                   subcategory="Gaussians"),
    params:
        kind="l2_uvp_dim",
        title="Gaussian pairs: L2-UVP against the dimension",
    log:
        f"{LOGS}/figures/toy/l2_uvp_vs_dim.log",
    conda:
        ENV
    script:
        "../scripts/toy_figure.py"
