"""The report page's tables as HTML fragments (every value escaped; pandas ``to_html(escape=True)``).

The page template (``templates/index.html.j2``) places them; ``lossbench.report.page`` decides
which appear.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.report.answers import censored_target
from lossbench.report.common import LR_KEY, REPLICATE_KEY, TASK_METRICS, format_value, higher_is_better, iter_groups, mask_equal, ordered_values
from lossbench.report.comparisons import group_stats
from lossbench.report.layout import (
    NBSP, Layout, _eval_split, _facet_title, _fmt, _fmt_p, _metric_label, _pm, _rows_matching, _table)
from lossbench.report.settings import fixed_settings, provenance_rows
from lossbench.report.tables import Runs, skipped_combinations
from lossbench.report.tuning import _chosen_in
from lossbench.report.views import TunedView

VERDICTS = {"best": "best", "tied": "tie: identical at every seed", "worse": "worse",
            "not distinguishable": "not distinguishable", "not tested": "no common seeds", "": "–"}


def _value_text(row, digits: int = 3) -> str:
    if row["not_applicable"]:
        return "not applicable"
    return _pm(row["mean"], row["std"], digits) if np.isfinite(row["mean"]) else "–"


def stats_frames(stats: pd.DataFrame, runs: Runs, view_results: pd.DataFrame, keys: list[str],
                 table_keys: list[str], early: bool = False,
                 targets: bool = True) -> list[tuple[str, str, pd.DataFrame]]:
    """The main table of one view: ``(title, note, table)`` per value of ``table_keys``.

    ``early``: ``stats`` is on ``early_<metric>`` (each run at its best validation epoch): the
    target columns give way to the median best validation epoch.
    """
    out = []
    for block_values, block in iter_groups(stats, table_keys):
        metric = block["metric"].iloc[0].removeprefix("early_")
        direction = "higher is better" if higher_is_better(metric) else "lower is better"
        rows = []
        for _, row in block.iterrows():
            values = tuple(row[k] for k in keys)
            members = _rows_matching(view_results, keys, values)
            epochs, seconds = censored_target(members), censored_target(members, "target_time_s")
            shown_keys = [key for key in keys if key not in table_keys]
            ci = (f"[{_fmt(row['ci_low'])},{NBSP}{_fmt(row['ci_high'])}]"
                  if np.isfinite(row["ci_low"]) else "–")
            rows.append({
                **({key: format_value(row[key]) for key in shown_keys} or {"group": "all runs"}),
                "completed": row["completed"],
                "mean ± std": _value_text(row),
                "95% CI of the mean": ci,
                "rank": _fmt(row["rank"], 0),
                "against the best": VERDICTS.get(row["verdict"], row["verdict"]),
                "difference to the best [95% CI]": _difference_cell(row),
                "Holm p": _fmt_p(row["p_holm"]),
                "smallest attainable p": _fmt_p(row["min_p"]),
                "epochs to target (median)": epochs.text if epochs is not None else "–",
                "seconds to target (median)": (f"{'> ' if seconds.median_is_censored else ''}"
                                               f"{seconds.median:.2g}" if seconds is not None
                                               and np.isfinite(seconds.median) else "–"),
                "not completed": row["messages"] or "",
            })
            if early or not targets:  # the targets belong to the primary metric's final values
                for column in ("epochs to target (median)", "seconds to target (median)"):
                    del rows[-1][column]
            if early:
                chosen = members.loc[members["status"] == "completed", "early_epoch"].astype(float)
                chosen = chosen[np.isfinite(chosen)]
                rows[-1]["best val epoch (median)"] = f"{float(np.median(chosen)):g}" if chosen.size else "–"
        target_value = _rows_matching(view_results, table_keys, block_values)["target_value"].dropna()
        target_text = (f" Target for 'epochs to target': {_metric_label(metric, unit=False)} "
                       f"{'≥' if higher_is_better(metric) else '≤'} {_fmt(target_value.iloc[0])} "
                       f"({runs.target_fraction:g} of the best mean final value of any group"
                       f"{' on this dataset' if runs.block_keys else ''})."
                       if len(target_value) and targets else "")
        table = pd.DataFrame(rows)
        if not table["not completed"].any():
            table = table.drop(columns="not completed")
        note = f"Final {_metric_label(metric)}, {direction}, over completed seeds.{target_text}"
        if early:
            chosen_on = "validation " + metric.split("_", 1)[1].replace("_", " ")
            note = (f"{_sentence(_metric_label(metric))} of each run at its first epoch with the best "
                    f"{chosen_on} (an early-stopped read-out, chosen on the validation split, never on "
                    f"the test split), {direction}, over completed seeds.")
        out.append((_facet_title(block_values, table_keys), note, table))
    return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _difference_cell(row) -> str:
    """``"−0.040 [−0.052, −0.028]"``: this group minus the best, paired by seed, with its interval."""
    if row["verdict"] == "tied":
        return "0 (identical at every seed)"
    if row["verdict"] not in ("worse", "not distinguishable") or not np.isfinite(row["difference"]):
        return "–"
    low, high = row["diff_low"], row["diff_high"]
    interval = (f"[{_signed(low)},{NBSP}{_signed(high)}]" if np.isfinite(low) and np.isfinite(high)
                else f"(not estimable with {int(row['n_paired'])} seeds)")
    return f"{_signed(row['difference'])} {interval}"


def _signed(value: float) -> str:
    return f"{value + 0.0:+.3f}".replace("-", "−")  # + 0.0: no "−0.000"


def stats_table(frames: list[tuple[str, str, pd.DataFrame]]) -> str:
    """``stats_frames`` as HTML: a heading, a note and a table per block."""
    if not frames:
        return "<p>No completed run has a final value of the primary metric.</p>"
    return "\n".join((f"<h4>{html.escape(title)}</h4>" if title else "")
                     + f"<p class='note'>{html.escape(note)}</p>" + _table(table)
                     for title, note, table in frames)


def paper_table(frames: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """The main table for stats.md / stats.tex: every block's rows, the block in a first column."""
    parts = [table.assign(**{"compared within": title}) if title else table for title, _, table in frames]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    if "compared within" in table:
        table = table[["compared within", *[c for c in table.columns if c != "compared within"]]]
    return table.drop(columns=[c for c in ("not completed",) if c in table]).replace(NBSP, " ", regex=True)


def all_metrics_table(runs: Runs, layout: Layout) -> str:
    """Mean ± std of the final training loss and every loss-independent metric, per group."""
    parts = []
    keys = layout.view_keys
    for block_values, block in iter_groups(layout.view_results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        split = _eval_split(primary.iloc[0])
        task = block["task"].dropna().iloc[0]
        metrics = ["final_train_loss"] + [f"final_{split}_{m}" for m in TASK_METRICS.get(task, ())]
        rows = {}
        for metric in (m for m in metrics if m in block):
            cells = group_stats(block, metric, keys, runs.block_keys, compare=False, interval=False)
            for _, row in cells.iterrows():
                group = rows.setdefault(row["group"], {
                    **{k: format_value(row[k]) for k in keys if k not in runs.block_keys},
                    "completed": row["completed"]})
                name = ("training loss (own loss)" if metric == "final_train_loss"
                        else _metric_label(metric.removeprefix("final_")))
                group[name] = _value_text(row, 4)
        title = _facet_title(block_values, runs.block_keys)
        parts.append((f"<h4>{html.escape(title)}</h4>" if title else "") + _table(pd.DataFrame(rows.values())))
    return "\n".join(parts)


def lr_table(runs: Runs, tuned: TunedView) -> str:
    """Final primary metric of every group at every learning rate (mean ± std), chosen rate starred."""
    parts = []
    shown = [key for key in tuned.group_keys if key not in runs.block_keys]
    for block_values, block in iter_groups(runs.results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        metric = "final_" + primary.iloc[0]
        cells = group_stats(block, metric, runs.group_keys, runs.block_keys + [LR_KEY],
                            compare=False, interval=False)
        rates = ordered_values(block[LR_KEY])
        rows = []
        for values, group in iter_groups(cells, shown):
            chosen = _rows_matching(_chosen_in(tuned.best_lr, block, runs.block_keys), shown, values)
            chosen_lr = chosen[LR_KEY].iloc[0] if len(chosen) else None
            row = {key: format_value(value) for key, value in zip(shown, values)} or {"group": "all runs"}
            for rate in rates:
                cell = group[mask_equal(group[LR_KEY], rate)]
                if cell.empty:
                    row[f"lr={format_value(rate)}"] = "–"
                    continue
                cell = cell.iloc[0]
                text = _pm(cell["mean"], cell["std"]) if np.isfinite(cell["mean"]) else "no completed run"
                if cell["n_completed"] < cell["n_runs"]:
                    text += f" ({cell['n_completed']} of {cell['n_runs']} completed)"
                if chosen_lr is not None and format_value(chosen_lr) == format_value(rate):
                    text = "★ " + text
                row[f"lr={format_value(rate)}"] = text
            row["chosen lr (on validation)"] = format_value(chosen_lr) if chosen_lr is not None else "–"
            rows.append(row)
        title = _facet_title(block_values, runs.block_keys)
        parts.append((f"<h4>{html.escape(title)}</h4>" if title else "")
                     + f"<p class='note'>Final {html.escape(_metric_label(primary.iloc[0]))}, mean ± std "
                       "over completed seeds, every group at every learning rate (the shared-rate "
                       "view). ★ marks the rate chosen for the tuned view: the best mean final "
                       "validation value among the rates at which every seed completed.</p>"
                     + _table(pd.DataFrame(rows)))
    return "\n".join(parts)


def _link(target: Path | str, report_dir: Path, text: str | None = None) -> str:
    """``<a href="relative/path">text</a>``, the path relative to the page (works offline, moved along)."""
    try:
        href = os.path.relpath(Path(target).resolve(), report_dir.resolve())
    except ValueError:  # another drive on Windows
        href = str(Path(target).resolve())
    href = Path(href).as_posix()
    return f"<a href='{html.escape(href, quote=True)}'>{html.escape(text or str(target))}</a>"


def runs_section(runs: Runs, report_dir: Path) -> str:
    """Counts by status, damaged, missing and skipped jobs, duplicates, the runs that did not
    complete, the keys that vary, and a link to every run folder."""
    counts = runs.status_counts
    status_text = ", ".join(f"{count} {status}" for status, count in counts.items())
    n_missing = len(runs.missing) + len(runs.missing_jobs)
    extra = [f"{len(runs.damaged)} damaged"] * bool(runs.damaged) + [f"{n_missing} missing"] * bool(n_missing)
    text = f"{len(runs.results)} {'confirmation ' if len(runs.tune_results) else ''}runs: {status_text}"
    if len(runs.tune_results):
        tune_counts = runs.tune_results["status"].value_counts().to_dict()
        text += (f"; plus {len(runs.tune_results)} tuning runs: "
                 + ", ".join(f"{tune_counts.get(s, 0)} {s}" for s in ("completed", "diverged", "failed")))
    parts = [f"<p>{html.escape(text)}{'; ' + ', '.join(extra) if extra else ''}.</p>"]
    if runs.damaged:
        parts.append(f"<h3>Damaged run folders (left out)</h3><p class='warn'>{len(runs.damaged)} run "
                     "folder(s) have files that cannot be trusted; they are not in any table or figure.</p>"
                     + _table(pd.DataFrame([{"run folder": str(path), "what is wrong": why}
                                            for path, why in runs.damaged])))
    if runs.problems:
        parts.append("<p class='warn'>Sweep files that could not be read: "
                     + html.escape("; ".join(runs.problems)) + "</p>")
    if n_missing:
        rows = [{"job": str(path), "status": "missing", "reason": "interrupted: no summary.json"}
                for path in runs.missing]
        rows += [{"job": " ".join(job.get("overrides", [])) or "(defaults)", "status": "missing",
                  "reason": str(job.get("reason") or "lost (dead worker or interrupted sweep)")}
                 for job in runs.missing_jobs]
        parts.append(f"<h3>Missing jobs</h3><p class='warn'>{n_missing} missing: started or planned "
                     "but never finished; run the sweep again to finish them.</p>" + _table(pd.DataFrame(rows)))
    skipped = skipped_combinations(runs)
    if len(skipped):
        parts.append(f"<p>{int(skipped['jobs'].sum())} job(s) not run because the combination cannot "
                     "work (<code>sweep.skip_invalid=true</code>), one row per combination:</p>"
                     + _table(skipped))
    if runs.duplicates:
        parts.append(f"<p class='note'>{len(runs.duplicates)} duplicate run(s) dropped (same config "
                     "hash): " + html.escape(", ".join(str(p) for p in runs.duplicates)) + "</p>")
    not_completed = runs.results[runs.results["status"] != "completed"]
    parts.append("<h3>Runs that did not complete</h3>" + (
        "<p>Every run completed.</p>" if not_completed.empty else _table(pd.DataFrame(
            [{**{key: format_value(row[key]) for key in runs.group_keys},
              REPLICATE_KEY: row[REPLICATE_KEY], "status": row["status"],
              "stopped at epoch": row["stop_epoch"], "message": row["message"] or "no message",
              "run": row["run_id"]} for _, row in not_completed.iterrows()]))))
    keys_table = _table(pd.DataFrame(
        [{"key": key, "values": ", ".join(format_value(v) for v in values), "count": len(values)}
         for key, values in runs.key_values.items()]
        + [{"key": f"{REPLICATE_KEY} (replicates)", "values": ", ".join(map(str, runs.seeds)),
            "count": len(runs.seeds)}]))
    parts.append("<h3>Keys that vary</h3><p class='note'>Each combination is a group; seeds are "
                 "replicates.</p>" + keys_table)
    folders = [*runs.results.itertuples(), *runs.tune_results.itertuples()]
    links = ", ".join(_link(row.run_dir, report_dir, row.run_id) for row in folders)
    parts.append(f"<details><summary>Run folders ({len(folders)})</summary><p class='files'>{links}</p></details>")
    return "\n".join(parts)


def configuration_section(runs: Runs, compared: list[str]) -> str:
    """Every fixed setting, every arm's tuned value, the data split sizes, provenance once."""
    ids = list(runs.results["run_id"])
    configs = [runs.configs.get(i, {}) for i in ids]
    choices = [runs.choices.get(i, {}) for i in ids]
    fixed = fixed_settings(configs, choices, [*compared, *runs.tuned_keys])
    parts = ["<p class='note'>The settings every compared run shares (from each run's resolved "
             "config). The compared keys are under Runs; a key tuned per arm is in the next table.</p>"
             + (_table(fixed) if len(fixed) else "<p>No fixed settings recorded besides the compared keys.</p>")]
    sizes = _split_sizes(runs, ids)
    if sizes is not None:
        parts.append("<h3>Data splits</h3>" + _table(sizes))
    if runs.tuned is not None and len(runs.tuned):
        parts.append("<h3>Tuned per arm (tuning stage, tuned.csv)</h3><p class='note'>Each arm's "
                     "setting chosen on the validation split of the tuning seeds; the confirmation "
                     "runs use it.</p>" + _table(runs.tuned.map(_cell_text)) + _edge_note(runs))
    provenance = provenance_rows([runs.provenance.get(i, {}) for i in ids], [runs.versions.get(i) for i in ids])
    if len(provenance):
        parts.append("<h3>Provenance</h3><p class='note'>Versions and machine of the runs; an item "
                     "with several values means the runs came from more than one.</p>" + _table(provenance))
    return "\n".join(parts)


def _edge_note(runs: Runs) -> str:
    """Arms whose best setting sat on the grid's edge, so the tuning grid was extended."""
    tuned = runs.tuned
    if "edge_extended" not in tuned.columns:
        return ""
    extended = tuned[tuned["edge_extended"].astype(str).str.lower().isin(("true", "1"))]
    arm_keys = [c for c in tuned.columns if c in runs.group_keys]
    names = [", ".join(f"{k}={format_value(row[k])}" for k in arm_keys) or "an arm" for _, row in extended.iterrows()]
    if not names:
        return ""
    return ("<p class='warn'>" + html.escape("; ".join(names)) + ": the best setting was on the edge of "
            "the tuning grid, so the grid was extended beyond it; see the sensitivity figure.</p>")


def _cell_text(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else format_value(value)


def _split_sizes(runs: Runs, ids: list[str]) -> pd.DataFrame | None:
    """Samples per split when the runs recorded them (summary ``split_sizes``), one row per data set."""
    rows = {}
    for run_id in ids:
        config = runs.configs.get(run_id, {})
        sizes = runs.split_sizes.get(run_id)
        if not isinstance(sizes, dict):
            continue
        name = runs.choices.get(run_id, {}).get("dataset") or str((config.get("dataset") or {}).get("name", "data"))
        rows.setdefault(name, {"data set": name, **{f"{k} samples": v for k, v in sizes.items()}})
    return pd.DataFrame(rows.values()) if rows else None


def files_section(runs: Runs, report_dir: Path, out_dir: Path, written: list[str], figures: list) -> str:
    """Links to the tables written next to the report, and to every figure file."""
    tables = [_link(out_dir / name, report_dir, name) for name in written]
    tuned = [_link(d / "tuned.csv", report_dir, f"tuned.csv ({d.name})") for d in runs.sweep_dirs
             if (d / "tuned.csv").is_file()]
    images = ", ".join(f"{_link(report_dir / (f.name + '.png'), report_dir, f.name + '.png')} "
                       f"({_link(report_dir / (f.name + '.svg'), report_dir, 'svg')})" for f in figures)
    return (f"<p>Tables: {', '.join(tables + tuned)}.</p><p>Figures: {images or 'none'}.</p>"
            "<p class='note'>In the CSV files a text cell that would start a spreadsheet formula "
            "(=, +, -, @, tab, carriage return) is written with a leading single quote; numbers "
            "are unchanged.</p>")
