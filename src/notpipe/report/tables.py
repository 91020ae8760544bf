"""LaTeX tables (booktabs) generated from the pipeline's CSVs, for ``report/main.tex``.

Every number in a table comes from a CSV written by a rule; published numbers
sit in their own, labelled columns; smoke results (random-weight feature
extractors) are marked with a dagger and a note, and the image table puts rows
scored with real and with smoke Inception features in separately labelled blocks.
"""

from __future__ import annotations

import math

import pandas as pd

from notpipe.data.datasets import generated_datasets

_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex(s) -> str:
    """Escape text for LaTeX."""
    return "".join(_ESCAPE.get(c, c) for c in str(s))


def num(v, digits: int = 3, std=None) -> str:
    """A number with ``digits`` significant digits (``--`` when missing), ``± std`` when given."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "--"
    out = f"{float(v):.{digits}g}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        out += rf" $\pm$ {float(std):.2g}"
    return out


def _table(header: list[str], rows: list[list[str] | str], spec: str, caption: str, label: str,
           group: str | None = None, notes: list[str] = ()) -> str:
    """A booktabs table; a ``str`` row is written as it is (a block title, a rule)."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
             r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if group:
        lines.append(group)
    lines += [" & ".join(header) + r" \\", r"\midrule"]
    lines += [r if isinstance(r, str) else " & ".join(r) + r" \\" for r in rows] or \
        [rf"\multicolumn{{{len(header)}}}{{c}}{{(no runs)}} \\"]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    for n in notes:
        lines.append(rf"\par\smallskip\footnotesize {n}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def toy_table(summary: pd.DataFrame) -> str:
    """NOT vs exact (POT emd) vs entropic OT, fidelity with its spread, and L2-UVP, one row per toy."""
    header = ["experiment", "NOT cost", "exact OT", "Sinkhorn", "ratio", r"$W_2$ push-fwd",
              r"$W_2$ floor", r"$W_2$/floor", r"energy $\times 10^3$", r"L2-UVP \%", "modes", "train s"]
    rows = []
    for _, r in summary.iterrows():
        get = r.get
        energy, ci = get("energy_distance"), get("energy_distance_ci95")
        rows.append([tex(r["experiment"]), num(get("not_cost")), num(get("ot_cost_exact")),
                     num(get("ot_cost_sinkhorn")), num(get("cost_ratio")),
                     num(get("w2_pushforward"), std=get("w2_pushforward_std")),
                     num(get("w2_noise_floor"), std=get("w2_noise_floor_std")),
                     num(get("w2_over_floor"), std=get("w2_over_floor_std")),
                     num(None if energy is None else 1e3 * energy, 2, std=None if ci is None else 1e3 * ci),
                     num(get("l2_uvp")), num(get("modes_covered"), 2), num(get("train_seconds"), 3)])
    return _table(header, rows, "l" + "r" * (len(header) - 1),
                  "Toy experiments: transport cost of the learned map (NOT) against exact discrete OT "
                  "(POT \\texttt{emd}) and entropic OT (Sinkhorn) on the same fresh samples; $W_2$ between "
                  "the push-forward and target samples, the target-vs-target noise floor and their ratio, "
                  "each as mean $\\pm$ std over independent evaluation draws; the energy distance of the "
                  "push-forward to the target (0 when they agree) with the 95\\,\\% half-width of its mean; "
                  "L2-UVP against the closed-form map (Gaussian pairs).",
                  "tab:toy")


def _best(r) -> str:
    """The best snapshot by FID, as ``FID (step)``; ``--`` before curves carried it."""
    if pd.isna(r.get("best_fid")) or pd.isna(r.get("best_step")):
        return "--"
    return f"{num(r['best_fid'], 4)} ({int(r['best_step'])})"


#: a word on each real FID extractor (``eval.feature_extractor``) for the block titles
EXTRACTORS = {"legacy_pytorch": "pytorch-fid's InceptionV3, the NOT papers'", "clean": "clean-fid's Inception"}
def _flag(v) -> bool:
    """A CSV flag (bool, 0/1 or "True"/"False"); missing is False."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "1.0", "yes")
    return bool(v)


def _extractor(r) -> str:
    v = r.get("extractor")
    return "not recorded" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _marked(cell: str, mark: str) -> str:
    """A number with its footnote mark; a dash (no value) stays bare."""
    return cell + mark if cell not in ("--", "") else cell


def _block_title(smoke: bool, extractor: str, generated: bool) -> str:
    """What a block of the image table is: real or generated data, real or smoke Inception features."""
    ext = rf"extractor \texttt{{{tex(extractor)}}}"
    data = "generated data (not real images)" if generated else "real data"
    if smoke:
        return rf"smoke: random Inception weights ({ext}), numbers only check the plumbing; {data}"
    gloss = EXTRACTORS.get(extractor)
    return rf"{data}, real Inception features ({ext}" + (f": {tex(gloss)})" if gloss else ")")


def image_table(summary: pd.DataFrame, generated: list[str] | None = None) -> str:
    """Our image metrics per run beside the FID of the identity map and of the floor, with the
    published NOT FID in separate columns.

    Rows come in labelled blocks: real Inception features first, one block per extractor (and per
    real or generated data), then the smoke rows (random Inception weights).

    Parameters
    ----------
    summary : ``results/SUITE/eval/summary.csv`` (``extractor``, ``smoke``, ``fid``, ``fid_identity``,
        ``fid_target_halves``, ... per run)
    generated : names of the generated data sets (default :func:`generated_datasets`)
    """
    gen = set(generated_datasets() if generated is None else generated)
    header = ["run", "pair", "cost", "px", "step", "FID of $T$", "FID identity", "FID floor", "best FID (step)",
              "KID", "LPIPS cont.", "LPIPS div.", "cost", "FID", "px"]
    ours = len(header) - 2
    group = (rf"\multicolumn{{{ours}}}{{c}}{{ours (computed by this pipeline)}} & "
             rf"\multicolumn{{2}}{{c}}{{published (reference)}} \\ \cmidrule(lr){{1-{ours}}}"
             rf"\cmidrule(lr){{{ours + 1}-{ours + 2}}}")
    blocks: dict[tuple, list[list[str]]] = {}
    any_smoke, any_noise, any_lp_smoke = False, False, False
    for _, r in summary.iterrows():
        smoke = _flag(r.get("smoke", False))
        any_smoke |= smoke
        lp = r"$^\S$" if _flag(r.get("lpips_smoke", False)) and not smoke else ""
        any_lp_smoke |= bool(lp)
        noise = r["source"] == "noise"  # OTM generation: no content to keep
        any_noise |= noise
        key = (smoke, r["source"] in gen or r["target"] in gen, _extractor(r))
        dag = r"$^\dagger$" if smoke else ""
        blocks.setdefault(key, []).append([
            tex(r["run"]) + dag, tex(f"{r['source']} -> {r['target']}").replace("->", r"$\to$"),
            tex(r["cost"]), str(int(r["image_size"])), str(int(r["step"])),
            num(r.get("fid"), 4, r.get("fid_std")), num(r.get("fid_identity"), 4),
            num(r.get("fid_target_halves"), 4), _best(r), num(r.get("kid"), 2),
            r"n/a$^\ddagger$" if noise else _marked(num(r.get("lpips_content"), 3), lp),
            _marked(num(r.get("lpips_diversity"), 3), lp), num(r.get("transport_cost"), 3),
            num(r.get("published_fid"), 4, r.get("published_fid_std")),
            num(r.get("published_image_size"), 3)])
    rows: list = []
    for i, key in enumerate(sorted(blocks, key=lambda k: (k[0], k[1]))):  # real features, real data first
        smoke, generated_data, extractor = key
        if i:
            rows.append(r"\midrule")
        title = _block_title(smoke, extractor, generated_data)
        rows.append(rf"\multicolumn{{{len(header)}}}{{l}}{{\textit{{{title}}}}} \\")
        rows += blocks[key]
    notes = [r"$^\dagger$ smoke: random-weight Inception / LPIPS trunk (no weights on this machine); "
             "these numbers only check the pipeline and are not comparable with published FIDs."] if any_smoke else []
    if any_lp_smoke:
        notes.append(r"$^\S$ LPIPS with a random trunk (its ImageNet weights are not on this machine): a smoke "
                     "number beside real FIDs, it only checks the pipeline.")
    if any_noise:
        notes.append(r"$^\ddagger$ generation from noise (OTM): the input is noise, so there is no LPIPS "
                     "content term and no identity map; FID/KID are against the target's test split.")
    return _table(header, rows, "lllrr" + "r" * 8 + "|rr",
                  "Image translation on the test split, at the last snapshot (step): FID and KID with the "
                  "Inception features each block names (real features and smoke features never share a "
                  "block), beside the FID of the identity map (the source test inputs left as they are, "
                  "against the same target reference: a map that does not go below it has learnt nothing "
                  "about the target) and the floor (two disjoint halves of the target reference images "
                  "against each other); the best snapshot by FID with its step, LPIPS content "
                  "(input vs output) and diversity (stochastic maps), per-pixel transport cost. "
                  "Published FIDs (NOT and Kernel NOT: authors' notebooks) are references, not our results, and "
                  "appear only beside a run of the same image size evaluated under the same protocol; "
                  "a dash there means no published number exists for that size and protocol.", "tab:images", group, notes)


def restoration_table(summary: pd.DataFrame) -> str:
    """OTM's unpaired restoration runs: FID, paired PSNR / MSE of T(degraded) and of the degraded
    input against the originals, beside the published OTM, WGAN-GP and input FIDs; "" without such runs."""
    if "psnr" not in summary:
        return ""
    rest = summary[summary["psnr"].notna()]
    header = ["run", r"degraded $\to$ clean", "FID", "FID input", "PSNR", "PSNR input", "MSE", "MSE input",
              "OTM", "WGAN-GP", "input"]
    group = (r"\multicolumn{8}{c}{ours (computed by this pipeline)} & "
             r"\multicolumn{3}{c}{published FID (OTM paper)} \\ \cmidrule(lr){1-8}\cmidrule(lr){9-11}")
    rows = [[tex(r["run"]) + (r"$^\dagger$" if bool(r.get("smoke", False)) else ""),
             tex(f"{r['source']} -> {r['target']}").replace("->", r"$\to$"),
             num(r.get("fid"), 4, r.get("fid_std")), num(r.get("fid_input"), 4),
             num(r.get("psnr"), 4, r.get("psnr_std")),
             num(r.get("psnr_input"), 4), num(r.get("mse"), 3), num(r.get("mse_input"), 3),
             num(r.get("published_fid"), 4), num(r.get("published_wgan_fid"), 4),
             num(r.get("published_input_fid"), 4)] for _, r in rest.iterrows()]
    return _table(header, rows, "ll" + "r" * 6 + "|rrr",
                  "Unpaired restoration (OTM): each source test image is a degraded copy of a known original "
                  "(the clean target half never shares an image with it). FID against the clean half's test "
                  "split, of $T$(degraded) and of the degraded input itself; PSNR (dB) and MSE on the [0, 1] "
                  "scale of both against the originals: $T$ restores when its PSNR is above the input's. Published "
                  "FIDs appear only beside runs evaluated under the OTM paper's protocol; a dash means none "
                  "is comparable.",
                  "tab:restoration", group)
