# Toy stage: NOT on 2-D / Gaussian problems vs exact discrete OT (POT) and closed forms.


rule toy_train:
    output:
        model=L.toy_model("{name}"),
        log_csv=L.toy_log("{name}"),
    params:
        exp=lambda w: TOY[w.name],
    log:
        L.log("toy", "{name}.train.log"),
    benchmark:
        L.benchmark("toy", "{name}.train.tsv")
    threads: config["toy"]["threads"]
    conda:
        ENV
    script:
        "../scripts/toy_train.py"


rule toy_evaluate:
    input:
        model=rules.toy_train.output.model,
    output:
        metrics=L.toy_metrics("{name}"),
        samples=L.toy_samples("{name}"),
    params:
        settings={k: config["toy"][k] for k in ("n_eval", "n_plot", "z_eval", "sinkhorn_eps", "emd_max_iter", "eval_draws")},
        exp=lambda w: {**get_toy_trajectory(w.name), "steps": TOY[w.name]["steps"]},
    log:
        L.log("toy", "{name}.evaluate.log"),
    benchmark:
        L.benchmark("toy", "{name}.evaluate.tsv")
    threads: 1
    conda:
        ENV
    script:
        "../scripts/toy_evaluate.py"


rule toy_summary:
    input:
        [L.toy_metrics(name) for name in TOY],
    output:
        L.toy_summary(),
    params:
        kind="summary",
        gammas=None,
        # NOT or the WGAN-GP baseline (cost none): figures keep the two apart
        methods=TOY_METHODS,
    log:
        L.log("toy", "summary.log"),
    conda:
        ENV
    script:
        "../scripts/toy_table.py"


rule toy_sweep_table:
    input:
        lambda w: [L.toy_metrics(n) for _, n in TOY_SWEEPS[w.sweep]],
    output:
        L.toy_sweep("{sweep}"),
    params:
        kind="sweep",
        gammas=lambda w: [g for g, _ in TOY_SWEEPS[w.sweep]],
    log:
        L.log("toy", "sweep_{sweep}.log"),
    conda:
        ENV
    script:
        "../scripts/toy_table.py"


# One rule per figure kind (named toy_figure_<kind>): asking for one file rebuilds
# only its chain (train -> evaluate -> figure).
_TOY_FIGURE_SPECS = {
    "scatter": (L.toy_samples, "input, target, push-forward"),
    "transport": (L.toy_samples, "learned map vs exact OT plan (one batch)"),
    "one_to_many": (L.toy_samples, "several z for fixed x"),
    "losses": (L.toy_log, "training curves"),
}

for _kind, (_source, _title) in _TOY_FIGURE_SPECS.items():

    rule:
        name:
            f"toy_figure_{_kind}"
        input:
            _source("{name}"),
        output:
            pdf=L.toy_figure("{name}", _kind),
            png=report(L.toy_figure("{name}", _kind, "png"), caption="../report/toy.rst",
                       category="Toy", subcategory="{name}"),
        params:
            kind=_kind,
            title=f"{{name}}: {_title}",
        log:
            L.log("figures", "toy", f"{{name}}_{_kind}.log"),
        conda:
            ENV
        script:
            "../scripts/toy_figure.py"


rule toy_figure_gamma_sweep:
    input:
        L.toy_sweep("{sweep}"),
    output:
        pdf=L.toy_figure("{sweep}", "gamma_sweep"),
        png=report(L.toy_figure("{sweep}", "gamma_sweep", "png"), caption="../report/sweep.rst",
                   category="Toy", subcategory="gamma sweeps"),
    params:
        kind="gamma_sweep",
        title=lambda w: f"{w.sweep}: modes covered and conditional variance vs gamma",
    log:
        L.log("figures", "toy", "{sweep}_gamma_sweep.log"),
    conda:
        ENV
    script:
        "../scripts/toy_figure.py"


rule toy_figure_l2_uvp_dim:
    input:
        L.toy_summary(),
    output:
        pdf=L.figure("toy", "l2_uvp_vs_dim"),
        png=report(L.figure("toy", "l2_uvp_vs_dim", "png"), caption="../report/toy.rst", category="Toy",
                   subcategory="Gaussians"),
    params:
        kind="l2_uvp_dim",
        title="Gaussian pairs: L2-UVP against the dimension",
    log:
        L.log("figures", "toy", "l2_uvp_vs_dim.log"),
    conda:
        ENV
    script:
        "../scripts/toy_figure.py"
