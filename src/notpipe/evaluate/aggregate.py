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


def summary(metrics_csvs: list[str | Path], runs: dict, published_csv: str | Path) -> pd.DataFrame:
    """One row per run (final snapshot) with the published reference numbers in their own columns."""
    rows = []
    pub = pd.read_csv(published_csv)
    for p in metrics_csvs:
        df = pd.read_csv(p)
        t = df[df["map"] == "T"].set_index("metric")
        name = df["run"].iloc[0]
        run = runs[name]
        row = {"run": name, "source": run["source"], "target": run["target"], "cost": run["cost"]["name"],
               "image_size": run["image_size"], "step": int(df["step"].max()),
               "extractor": t.loc["fid", "extractor"], "smoke": bool(t.loc["fid", "smoke"])}
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
