"""The LaTeX report: generated include files and the latexmk build.

``report/main.tex`` only ``\\input``s files written here (lists of generated
figures, the configuration table, paths) and the tables of :mod:`notpipe.report.tables`;
:func:`compile_pdf` copies it with its style file into a build folder and runs
``latexmk -pdf``. Figures are referenced by the path the rules wrote them to, so
nothing in the report is typed by hand.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from notpipe.io import atomic_path
from notpipe.paths import figure_file
from notpipe.report.tables import num, tex

TEX_HINT = ("install TeX: Debian/Ubuntu `apt-get install texlive-latex-recommended texlive-latex-extra "
            "latexmk`, or use envs/report.yaml (conda)")


_WIDTHS = {1: r"\linewidth", 2: r"0.49\linewidth", 3: r"0.32\linewidth"}


def _figure(panels: list[tuple[str, str, int]], caption: str) -> str:
    """One figure of ``(pdf path, sub-caption, panels per row)``: wide panels get a row of their own."""
    if not panels:
        return ""
    out, used = [r"\begin{figure}[H]", r"\centering"], 0
    for path, sub, per_row in panels:
        if used and used + 1 > per_row:
            out.append(r"\par\medskip")
            used = 0
        out.append(rf"\begin{{subfigure}}[t]{{{_WIDTHS[per_row]}}}\centering"
                   rf"\includegraphics[width=\linewidth]{{{path}}}\caption{{{tex(sub)}}}\end{{subfigure}}\hfill")
        used = (used + 1) % per_row
    out += [rf"\caption{{{caption}}}", r"\end{figure}", ""]
    return "\n".join(out)


def _single(path: str, caption: str, width: str = r"0.7\linewidth") -> str:
    return "\n".join([r"\begin{figure}[H]", r"\centering", rf"\includegraphics[width={width}]{{{path}}}",
                       rf"\caption{{{caption}}}", r"\end{figure}", ""])


#: panels per row of each toy figure kind (the scatter and loss figures are wide)
TOY_LAYOUT = {"scatter": 1, "losses": 1, "transport": 2, "one_to_many": 2}


def figures_toy(figs: dict[str, list[str]], sweeps: list[str]) -> str:
    """``figs``: experiment -> its figure PDFs (scatter, transport, losses, one_to_many)."""
    parts = []
    for name, paths in figs.items():
        kinds = [Path(p).stem[len(name) + 1:] for p in paths]
        order = sorted(range(len(paths)), key=lambda i: list(TOY_LAYOUT).index(kinds[i]) if kinds[i] in TOY_LAYOUT else 9)
        order = [i for i in order if TOY_LAYOUT.get(kinds[i], 1) == 1][:1] + \
            [i for i in order if TOY_LAYOUT.get(kinds[i], 1) == 2] + [i for i in order if TOY_LAYOUT.get(kinds[i], 1) == 1][1:]
        panels = [(paths[i], kinds[i].replace("_", " "), TOY_LAYOUT.get(kinds[i], 1)) for i in order]
        parts.append(_figure(panels, f"Toy experiment \\texttt{{{tex(name)}}}."))
    for p in sweeps:
        if Path(p).stem == "l2_uvp_vs_dim":
            parts.append(_single(p, "Gaussian pairs: L2-UVP (\\%) of NOT, of the discrete barycentric map and "
                                 "of the W2 benchmark's baselines (identity, linear map fitted on samples) "
                                 "against the dimension.", r"\linewidth"))
            continue
        parts.append(_single(p, f"$\\gamma$ sweep \\texttt{{{tex(Path(p).stem)}}}: modes covered and "
                             "conditional variance against $\\gamma$.", r"\linewidth"))
    return "\n".join(parts) or "No toy experiments in this configuration.\n"


def figures_images(runs: dict[str, dict], figdir: str) -> str:
    parts = []
    for name in runs:
        parts.append(_single(figure_file(figdir, "images", f"{name}_grid"),
                             f"Run \\texttt{{{tex(name)}}}: first row test inputs, then $T(x, z)$.", r"\linewidth"))
        parts.append(_single(figure_file(figdir, "images", f"{name}_losses"),
                             f"Run \\texttt{{{tex(name)}}}: losses, cost term and gradient norms.", r"\linewidth"))
    return "\n".join(parts) or "No image runs in this configuration.\n"


def figures_eval(runs: dict[str, dict], figdir: str) -> str:
    if not runs:
        return "No image runs in this configuration.\n"
    parts = [_single(figure_file(figdir, "images", f"{n}_fid_curve"), f"Run \\texttt{{{tex(n)}}}: FID and transport "
                     "cost over training (every kept snapshot).", r"\linewidth") for n in runs]
    parts.append(_single(figure_file(figdir, "images", "tradeoff"),
                         "FID against transport cost across runs (the papers' trade-off).", r"\linewidth"))
    return "\n".join(parts)


def figures_speed(runs: dict[str, dict], figdir: str) -> str:
    if not runs:
        return "No image runs in this configuration.\n"
    return _single(figure_file(figdir, "speed", "throughput"),
                   "Median training throughput per run (images through $T$ per second).", r"0.6\linewidth")


def config_table(cfg: dict) -> str:
    """The runs of the configuration (from the validated config, not typed by hand)."""
    rows = []
    for name, r in cfg["images"]["runs"].items():
        c = r["cost"]
        gamma = num(c.get("gamma"), 3) if c["name"] != "strong" else "--"
        rows.append(" & ".join([tex(name), tex(r["source"]), tex(r["target"]), tex(c["name"]), gamma,
                                str(c.get("z_size", 1) if c["name"] != "strong" else 1), str(r["image_size"]),
                                str(r["batch"]), str(r["k_t"]), str(r["steps"]),
                                f"{r['model']['t_base']}/{r['model']['f_nf']}"]) + r" \\")
    for name, e in cfg["toy"]["experiments"].items():
        c = e["cost"]
        gam = ", ".join(num(g, 3) for g in e.get("gamma_sweep") or []) or (num(c.get("gamma"), 3) if c["name"] != "strong" else "--")
        rows.append(" & ".join([tex(name), tex(e["source"]["name"]), tex(e["target"]["name"]), tex(c["name"]), gam,
                                str(c.get("z_size", 1) if c["name"] != "strong" else 1), "--", str(e["batch"]),
                                str(e["k_t"]), str(e["steps"]), "MLP"]) + r" \\")
    head = r"run & source & target & cost & $\gamma$ & $|Z_x|$ & px & batch & $K_T$ & f-steps & T/f width \\"
    return "\n".join([r"\begin{table}[H]", r"\centering", r"\small", r"\caption{Runs of this configuration.}",
                      r"\label{tab:config}", r"\resizebox{\linewidth}{!}{%", r"\begin{tabular}{llllrrrrrrl}",
                      r"\toprule", head, r"\midrule", *rows, r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""])


def paths_tex(figdir: Path) -> str:
    return "% generated: where the figures are\n\\graphicspath{{" + str(Path(figdir).resolve()) + "/}}\n"


def compile_pdf(build_dir: str | Path, out_pdf: str | Path, log_path: str | Path | None = None,
                sources: list[str | Path] = ("report/main.tex", "report/notpipe.sty")) -> Path:
    """Copy ``sources`` (``main.tex`` + ``notpipe.sty``, as the rule declares them) into
    ``build_dir`` (which holds ``generated/``), run latexmk, and write ``out_pdf`` atomically."""
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        raise RuntimeError(f"latexmk/pdflatex not found: {TEX_HINT}")
    build = Path(build_dir)
    for src in map(Path, sources):
        shutil.copyfile(src, build / src.name)
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "main.tex"]
    proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
    if log_path:
        Path(log_path).write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stdout.splitlines() if ln.startswith(("!", "./main.tex:", "main.tex:"))]
        raise RuntimeError(f"latexmk failed ({'; '.join(errors[:3]) or 'see ' + str(build / 'main.log')})")
    with atomic_path(out_pdf, suffix=".pdf") as tmp:
        shutil.copyfile(build / "main.pdf", tmp)
    return Path(out_pdf)
