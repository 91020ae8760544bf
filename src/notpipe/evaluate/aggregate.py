"""Aggregations of the evaluation stage (torch-free): the curve over snapshots and the summary.

The summary puts the published numbers of ``workflow/resources/published_fid.csv``
in their own ``published_*`` columns, never in ours, and never next to smoke rows.
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
            curve_csvs: list[str | Path] | None = None) -> pd.DataFrame:
    """One row per run (final snapshot) with the published reference numbers in their own columns;
    with ``curve_csvs`` (same order) also the best snapshot by FID (``best_step``, ``best_fid``)."""
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
        for metric in t.index:
            row[metric] = t.loc[metric, "value"]
            if pd.notna(t.loc[metric, "std"]):
                row[f"{metric}_std"] = t.loc[metric, "std"]
        ref = pub[(pub.source == run["source"]) & (pub.target == run["target"])
                  & (pub.cost == run["cost"]["name"]) & (pub.method.str.startswith("NOT"))]
        if len(ref) and not row["smoke"]:
            r = ref.iloc[0]
            row.update({"published_fid": r.fid, "published_fid_std": r.fid_std,
                        "published_image_size": r.image_size, "published_source": r.reference})
        else:
            row.update({"published_fid": None, "published_fid_std": None, "published_image_size": None,
                        "published_source": "not comparable (smoke extractor)" if len(ref) else None})
        rows.append(row)
    return pd.DataFrame(rows)
