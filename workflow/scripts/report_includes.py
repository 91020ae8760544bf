"""Write the generated LaTeX includes of report/main.tex (figure lists, config table, paths).

Runs under Snakemake only (it needs the validated config and the figure lists of the rules).
"""

from pathlib import Path

from notpipe import report
from notpipe.stage import entry


def main(config: dict, outputs: list[str], toy_figures: dict, sweep_figures: list, figures_dir: str) -> None:
    absdir = str(Path(figures_dir).resolve())
    ab = lambda p: str(Path(p).resolve())  # noqa: E731  (LaTeX runs in another folder)
    runs = config["images"]["runs"]
    texts = {
        "paths": report.paths_tex(Path(figures_dir)),
        "config_name": f"notpipe {__import__('notpipe').__version__}\n",
        "table_config": report.config_table(config),
        "figures_toy": report.figures_toy({n: [ab(p) for p in ps] for n, ps in toy_figures.items()},
                                          [ab(p) for p in sweep_figures]),
        "figures_images": report.figures_images(runs, absdir),
        "figures_eval": report.figures_eval(runs, absdir),
        "figures_speed": report.figures_speed(runs, absdir),
    }
    for out in outputs:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(texts[Path(out).stem])


if __name__ == "__main__":
    smk = globals()["snakemake"]
    entry(main, None, lambda s: dict(config=s.params.config, outputs=list(s.output), toy_figures=s.params.toy_figures,
                                     sweep_figures=s.params.sweep_figures, figures_dir=s.params.figures_dir), smk, torch_threads=False)
