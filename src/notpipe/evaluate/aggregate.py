"""Aggregations of the evaluation stage (torch-free): the curve over snapshots and the summary.

The summary puts the published numbers of ``workflow/resources/published_fid.csv``
in their own ``published_*`` columns, never in ours, never next to smoke rows, and only
beside runs of the same image size evaluated under the same protocol (``run_protocol``);
otherwise it says there is no published number to compare with.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def curve(step_csvs: list[str | Path]) -> pd.DataFrame:
    """Wide table ``step x metric`` (T map) over all evaluated snapshots."""
    df = pd.concat([pd.read_csv(p) for p in step_csvs], ignore_index=True)
    df = df[df["map"] == "T"]
    wide = df.pivot_table(index=["run", "step"], columns="metric", values="value").reset_index()
    smoke = df.groupby("step")["smoke"].any().rename("smoke").reset_index()
    return wide.merge(smoke, on="step").sort_values("step")


def best_by_fid(curve_csv: str | Path) -> dict:
    """``best_step``, ``best_fid`` (and its std) of the snapshot with the lowest FID in a curve.csv."""
    c = pd.read_csv(curve_csv)
    if "fid" not in c or c["fid"].isna().all():
        return {"best_step": None, "best_fid": None, "best_fid_std": None}
    r = c.loc[c["fid"].idxmin()]
    return {"best_step": int(r["step"]), "best_fid": float(r["fid"]),
            "best_fid_std": float(r["fid_std"]) if "fid_std" in c and pd.notna(r.get("fid_std")) else None}


def summary(metrics_csvs: list[str | Path], runs: dict, published_csv: str | Path,
            curve_csvs: list[str | Path] | None = None,
            baseline_csvs: list[str | Path] | None = None) -> pd.DataFrame:
    """One row per run (final snapshot) with the published reference numbers in their own columns;
    with ``curve_csvs`` (same order) also the best snapshot by FID (``best_step``, ``best_fid``);
    with ``baseline_csvs`` (same order) the FID/KID of the identity map and of the target halves
    (``fid_identity``, ``fid_target_halves``, ...)."""
    rows = []
    pub = pd.read_csv(published_csv)
    for i, p in enumerate(metrics_csvs):
        df = pd.read_csv(p)
        t = df[df["map"] == "T"].set_index("metric")
        name = df["run"].iloc[0]
        run = runs[name]
        row = {"run": name, "source": run["source"], "target": run["target"], "cost": run["cost"]["name"],
               "image_size": run["image_size"], "step": int(df["step"].max()),
               "extractor": t.loc["fid", "extractor"], "smoke": bool(t.loc["fid", "smoke"])}
        if curve_csvs is not None:
            row.update(best_by_fid(curve_csvs[i]))
        lp = [m for m in t.index if str(m).startswith("lpips")]
        if lp:  # LPIPS with a random trunk is smoke even where the FID features are real
            row["lpips_smoke"] = bool(t.loc[lp, "smoke"].astype(bool).any())
        for metric in t.index:
            row[metric] = t.loc[metric, "value"]
            if pd.notna(t.loc[metric, "std"]):
                row[f"{metric}_std"] = t.loc[metric, "std"]
        for metric, value in df[df["map"] == "input"].set_index("metric")["value"].items():
            row[f"{metric}_input"] = value  # restoration: the degraded input (PSNR/MSE against its original, FID)
        if baseline_csvs is not None:
            for _, b in pd.read_csv(baseline_csvs[i]).iterrows():
                row[f"{b['metric']}_{b['map']}"] = b["value"]
        passes = int(t.loc["fid", "passes"]) if "passes" in t and pd.notna(t.loc["fid", "passes"]) else 1
        row.update(_published(pub, run, row["smoke"], run_protocol(row["extractor"], passes)))
        rows.append(row)
    return pd.DataFrame(rows)


#: published rows of our method family (NOT, its kernel variant, OTM): the published_fid columns
OURS = ("NOT", "OTM")
#: other published rows of the same task, each in its own column
OTHERS = {"WGAN-GP": "published_wgan_fid", "Input": "published_input_fid"}
#: augmented passes of the test split in the Kernel NOT protocol (textures)
KNOT_PASSES = 50
NOT_COMPARABLE = "no published number at this image size and protocol"


def run_protocol(extractor: str, passes: int = 1) -> str | None:
    """The published protocol (``protocol`` column of published_fid.csv) an evaluation follows.

    ``not_test_split``: pytorch-fid's Inception (``legacy_pytorch``), the source test split
    pushed once (10 z draws for stochastic maps) against the target test split;
    ``knot_augmented``: the same with 50 augmented passes of the test split (Kernel NOT, textures).
    OTM's protocols (50k generated samples, TF Inception) are not followed by our evaluation: None.
    """
    if extractor != "legacy_pytorch":
        return None
    return "knot_augmented" if passes >= KNOT_PASSES else "not_test_split"


def _published(pub: pd.DataFrame, run: dict, smoke: bool, protocol: str | None = None) -> dict:
    """The published numbers of the run's task at the run's image size and under the protocol of
    its evaluation, labelled, in their own columns; none for smoke rows or another size/protocol."""
    task = pub[(pub.source == run["source"]) & (pub.target == run["target"])]
    same = task[(task.image_size == run["image_size"]) & (task.protocol == protocol)] if protocol else task[:0]
    ours = same[(same.cost == run["cost"]["name"]) & (same.method.str.startswith(OURS))
                & ~same.method.str.endswith("-GP")]
    out = {"published_fid": None, "published_fid_std": None, "published_image_size": None,
           "published_method": None, "published_source": None, **{c: None for c in OTHERS.values()}}
    if smoke:
        if len(task):
            out["published_source"] = "not comparable (smoke extractor)"
        return out
    if len(ours):
        r = ours.iloc[0]
        out.update({"published_fid": r.fid, "published_fid_std": r.fid_std, "published_image_size": r.image_size,
                    "published_method": r.method, "published_source": r.reference})
    elif len(task):
        out["published_source"] = NOT_COMPARABLE
    for method, col in OTHERS.items():
        other = same[same.method == method]
        if len(other):
            out[col] = other.iloc[0].fid
    return out
