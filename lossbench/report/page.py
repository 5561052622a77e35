"""Figures and a self-contained HTML report for one or more sweep directories.

``build_report(sweep_dirs)`` reads the runs with ``lossbench.report.tables.load_runs`` and writes, into
``out_dir`` (default: the first sweep directory):

- ``results.csv``: one row per run (``Runs.results``); ``curves.csv``: every run's metrics.csv rows,
  long format (``Runs.curves``);
- ``report/index.html``: the question, then the answer (summary sentences, headline figures, the
  final-metric table), then the runs, details and every other figure; each figure is embedded as a
  base64 PNG, so the file opens offline on its own;
- ``report/<figure>.png`` and ``report/<figure>.svg`` for every figure, and ``report/stats.csv``
  (the per-group statistics shown in the tables, with ``view`` and ``compared_within`` columns).

What is compared
    The swept keys define the groups (``lossbench.report.tables``). When ``optimizer.lr`` is swept, the
    answer, the curves and the reliability diagram show each group at its own best learning rate
    (the tuned view); the shared-rate numbers are in a table of their own. With two or more
    compared keys (besides ``dataset``), the last one becomes the panel key: figures draw one panel
    per value of it (e.g. one per label-noise level) and colour the groups by the other keys, and
    the tables rank and test the groups within each panel value. ``report.headline`` in the runs'
    config (an experiment file may set it) names the figures shown with the answer; by default the
    heat map when there is one, else the primary metric's convergence curves.

Command line: ``lossbench-report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--target-fraction F]``.
"""

from __future__ import annotations

import argparse
import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from lossbench.report.answers import _answer_items, _question
from lossbench.report.common import LR_KEY, REPLICATE_KEY, TASK_METRICS, format_value, higher_is_better, iter_groups, mask_equal, ordered_values
from lossbench.report.figures import _all_figures, _chosen_in
from lossbench.report.layout import (
    NBSP, RC, FigureFile, Layout, _eval_split, _facet_title, _fmt, _fmt_p, _layout, _metric_label,
    _pm, _rows_matching, _table)
from lossbench.report.tables import NoRunsError, Runs, load_runs, skipped_combinations
from lossbench.report.views import TunedView, group_stats, shared_stats, tuned_stats, tuned_view

# autoescape: every value the template prints is text; sections arrive as HTML built with html.escape
_TEMPLATES = Environment(loader=PackageLoader("lossbench.report", "templates"),
                         autoescape=select_autoescape(["html", "j2"]), keep_trailing_newline=True)

def build_report(sweep_dirs: list[Path], out_dir: Path | None = None,
                 target_fraction: float = 0.95) -> Path:
    """Write results.csv, curves.csv and report/ (index.html, figures) for ``sweep_dirs``.

    ``sweep_dirs``: one or more sweep directories, merged (see ``lossbench.report.tables.load_runs``).
    ``out_dir``: where to write, default the first sweep directory. ``target_fraction``: the
    fraction of the best group's final primary metric that defines "reached the target".
    Returns the path of ``report/index.html``. Raises ``NoRunsError`` (a ValueError) for a
    directory that is missing or holds no runs.
    """
    runs = load_runs([Path(d) for d in sweep_dirs], target_fraction=target_fraction)
    out_dir = Path(out_dir) if out_dir is not None else runs.sweep_dirs[0]
    report_dir = out_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    runs.results.to_csv(out_dir / "results.csv", index=False)
    runs.curves.to_csv(out_dir / "curves.csv", index=False)

    tuned = tuned_view(runs)
    layout = _layout(runs, tuned)
    panel = [layout.panel_key] if layout.panel_key else []
    if tuned is not None:
        answer_stats = tuned_stats(runs, tuned, compare_within=panel)
        shared = shared_stats(runs)
        tables = [answer_stats.assign(view="tuned", compared_within=", ".join(layout.within)),
                  shared.assign(view="shared", compared_within=", ".join(runs.block_keys + [LR_KEY]))]
    else:
        answer_stats = shared_stats(runs, compare_within=panel)
        tables = [answer_stats.assign(view="shared", compared_within=", ".join(layout.within))]
    pd.concat(tables, ignore_index=True).to_csv(report_dir / "stats.csv", index=False)

    with matplotlib.rc_context(RC):
        figures = _all_figures(runs, tuned, layout, report_dir)
    index = report_dir / "index.html"
    index.write_text(_html(runs, tuned, layout, answer_stats, figures), encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    """``lossbench-report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--target-fraction F]``."""
    parser = argparse.ArgumentParser(
        prog="lossbench-report",
        description="Aggregate one or more lossbench sweep directories into results.csv, "
                    "curves.csv and a self-contained HTML report with figures.")
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR",
                        help="sweep directory (one run directory with summary.json per job); "
                             "several are merged")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output directory (default: the first SWEEP_DIR)")
    parser.add_argument("--target-fraction", type=float, default=0.95, metavar="F",
                        help="a run reaches the target at F times the best group's final "
                             "accuracy / R² (default 0.95; in (0, 1])")
    args = parser.parse_args(argv)
    if not 0.0 < args.target_fraction <= 1.0:
        parser.error(f"--target-fraction must be in (0, 1], got {args.target_fraction}")
    try:
        index = build_report(args.sweep_dirs, args.out, args.target_fraction)
    except NoRunsError as error:
        parser.error(str(error))
    out_dir = index.parent.parent.resolve()
    print(f"results: {out_dir / 'results.csv'}")
    print(f"curves:  {out_dir / 'curves.csv'}")
    print(f"report:  {index.resolve()}")
    return 0


# 


def _stats_table(stats: pd.DataFrame, runs: Runs, view_results: pd.DataFrame, keys: list[str],
                 table_keys: list[str]) -> str:
    """The final-metric table of one view, one table per value of ``table_keys``, with time to target."""
    if stats.empty:
        return "<p>No completed run has a final value of the primary metric.</p>"
    target = group_stats(view_results, "target_epoch", keys, runs.block_keys)
    target_time = group_stats(view_results, "target_time_s", keys, runs.block_keys)
    parts = []
    for block_values, block in iter_groups(stats, table_keys):
        metric = block["metric"].iloc[0]
        direction = "higher is better" if higher_is_better(metric) else "lower is better"
        rows = []
        for _, row in block.iterrows():
            values = tuple(row[k] for k in keys)
            reached = _rows_matching(target, keys, values).iloc[0] if len(target) else None
            seconds = _rows_matching(target_time, keys, values).iloc[0] if len(target_time) else None
            shown_keys = [key for key in keys if key not in table_keys]
            rows.append({
                **({key: format_value(row[key]) for key in shown_keys} or {"group": "all runs"}),
                "completed": row["completed"],
                "mean ± std": _pm(row["mean"], row["std"]),
                "95% CI": f"[{_fmt(row['ci_low'])},{NBSP}{_fmt(row['ci_high'])}]",
                "rank": _fmt(row["rank"], 0),
                "test vs best": "best" if row["best"] else (row["test"] or "–"),
                "p": _fmt_p(row["p_value"]),
                "p (Holm)": _fmt_p(row["p_holm"]),
                "epochs to target": _reached_text(reached),
                "time to target (s)": (f"{seconds['mean']:.2g}" if seconds is not None
                                       and np.isfinite(seconds["mean"]) else "–"),
                "not completed": row["messages"] or "",
            })
        title = _facet_title(block_values, table_keys)
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        target_value = _rows_matching(view_results, table_keys, block_values)["target_value"].dropna()
        target_text = (f" Target for 'epochs to target': {_metric_label(metric, unit=False)} "
                       f"{'≥' if higher_is_better(metric) else '≤'} {_fmt(target_value.iloc[0])} "
                       f"({runs.target_fraction:g} of the best mean final value of any group"
                       f"{' on this dataset' if runs.block_keys else ''})."
                       if len(target_value) else "")
        table = pd.DataFrame(rows)
        if not table["not completed"].any():
            table = table.drop(columns="not completed")
        parts.append(f"{heading}<p class='note'>Final {html.escape(_metric_label(metric))}"
                     f", {direction}, over completed seeds.{html.escape(target_text)}</p>"
                     + _table(table))
    return "\n".join(parts)


def _reached_text(reached) -> str:
    """"6.5 (2 of 3 reached)" from a group_stats row of target_epoch; "not reached (0 of 3)"."""
    if reached is None or reached["n_completed"] == 0:
        return "–"
    if reached["n"] == 0:
        return f"not reached (0 of {reached['n_completed']})"
    return f"{_fmt(reached['mean'], 1)} ({reached['n']} of {reached['n_completed']} reached)"


def _all_metrics_table(runs: Runs, layout: Layout) -> str:
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
            for _, row in group_stats(block, metric, keys, runs.block_keys).iterrows():
                group = rows.setdefault(row["group"], {
                    **{k: format_value(row[k]) for k in keys if k not in runs.block_keys},
                    "completed": row["completed"]})
                name = ("training loss (own loss)" if metric == "final_train_loss"
                        else _metric_label(metric.removeprefix("final_")))
                group[name] = _pm(row["mean"], row["std"], 4)
        title = _facet_title(block_values, runs.block_keys)
        parts.append((f"<h4>{html.escape(title)}</h4>" if title else "") + _table(pd.DataFrame(rows.values())))
    return "\n".join(parts)


def _lr_table(runs: Runs, tuned: TunedView) -> str:
    """Final primary metric of every group at every learning rate (mean ± std), chosen rate starred."""
    parts = []
    other = tuned.group_keys
    shown = [key for key in other if key not in runs.block_keys]
    for block_values, block in iter_groups(runs.results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        metric = "final_" + primary.iloc[0]
        cells = group_stats(block, metric, runs.group_keys, runs.block_keys + [LR_KEY])
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
                       "view). ★ marks the rate chosen for the tuned view (best mean final "
                       "validation value).</p>" + _table(pd.DataFrame(rows)))
    return "\n".join(parts)


def _runs_section(runs: Runs) -> str:
    """Counts by status, skipped combinations, missing and duplicate runs, the keys that vary."""
    counts = runs.status_counts
    status_text = ", ".join(f"{count} {status}" for status, count in counts.items())
    parts = [f"<p>{len(runs.results)} runs: {html.escape(status_text)}.</p>"]
    skipped = skipped_combinations(runs)
    if len(skipped):
        parts.append(f"<p>{int(skipped['jobs'].sum())} job(s) not run because the combination cannot "
                     "work (<code>sweep.skip_invalid=true</code>), one row per combination:</p>"
                     + _table(skipped))
    if runs.missing:
        parts.append(f"<p class='warn'>{len(runs.missing)} missing (interrupted, no summary.json): "
                     + html.escape(", ".join(str(p) for p in runs.missing)) + "</p>")
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
    return "\n".join(parts)


def _figure_html(figure: FigureFile) -> str:
    return (f"<figure id='{figure.name}'><h3>{html.escape(figure.title)}</h3>"
            f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,"
            f"{base64.b64encode(figure.png).decode('ascii')}'>"
            f"<figcaption>{html.escape(figure.caption)} "
            f"<span class='files'>Files: {figure.name}.png, {figure.name}.svg</span></figcaption></figure>")


def _headline_names(runs: Runs, tuned: TunedView | None, figures: list[FigureFile]) -> tuple[list[str], list[str]]:
    """The figures shown with the answer, and the ``report.headline`` names that do not exist."""
    names = [f.name for f in figures]
    if runs.headline:
        return [n for n in runs.headline if n in names], [n for n in runs.headline if n not in names]
    primaries = runs.results["primary_metric"].dropna()
    for name in ("heatmap_tuned", "heatmap", f"curves_{primaries.iloc[0]}" if len(primaries) else ""):
        if name in names:
            return [name], []
    return [], []


def _html(runs: Runs, tuned: TunedView | None, layout: Layout, answer_stats: pd.DataFrame,
          figures: list[FigureFile]) -> str:
    headline, unknown = _headline_names(runs, tuned, figures)
    by_name = {f.name: f for f in figures}
    if tuned is not None:
        view_note = ("Each group at its own best learning rate, chosen on the validation split "
                     "(the tuned view); the same groups at every learning rate are in "
                     "“Learning rate” below.")
    else:
        view_note = ("The learning rate was not swept, so every group trains at the rate its config sets; "
                     "one rate can suit some groups better than others (sweep optimizer.lr for the tuned view).")
    if layout.panel_key:
        view_note += (f" Groups are compared within each value of {layout.panel_key}"
                      + (" and dataset." if runs.block_keys else "."))
    elif runs.block_keys:
        view_note += " Groups are compared within each dataset."
    answer = ("<ul class='answer'>" + "".join(
        f"<li>{f'<b>{html.escape(where)}</b>: ' if where else ''}{html.escape(text)}</li>"
        for where, text in _answer_items(answer_stats, runs, layout, tuned)) + "</ul>")
    warn = "".join(f"<p class='warn'>report.headline names '{html.escape(n)}', which this report "
                   "does not have.</p>" for n in unknown)
    if tuned is not None and tuned.notes:  # e.g. a rate chosen at the edge of the grid
        warn += ("<p class='warn'>Caveats of the tuned view: "
                 + html.escape(" ".join(tuned.notes)) + "</p>")
    table_title = "Final metric per group" + (" (tuned: each at its own best learning rate)"
                                              if tuned is not None else "")
    sections = [
        f"<h2>Question</h2><p class='question'>{html.escape(_question(runs))}</p>",
        f"<h2>Answer</h2><p class='note'>{html.escape(view_note)}</p>{answer}{warn}"
        + "".join(_figure_html(by_name[name]) for name in headline)
        + f"<h3>{html.escape(table_title)}</h3>"
        + _stats_table(answer_stats, runs, layout.view_results, layout.view_keys, layout.within),
        "<h2>Runs</h2>" + _runs_section(runs),
    ]
    if tuned is not None:
        sections.append(
            "<h2>Learning rate</h2><p class='note'>Comparing groups at one shared learning rate is "
            "unfair to those whose good rates differ; the answer above uses each group's own "
            "best rate. The numbers at a shared learning rate:</p>"
            + "".join(f"<p class='warn'>{html.escape(note)}</p>" for note in tuned.notes)
            + _lr_table(runs, tuned))
    all_title = "All final metrics" + (" (tuned: each group at its own best learning rate)"
                                       if tuned is not None else "")
    sections.append(f"<h2>{html.escape(all_title)}</h2><p class='note'>Mean ± std over completed "
                    "seeds. The training loss is each run's own loss function (a CE and a KL run "
                    "differ by the constant entropy of the target, for example).</p>"
                    + _all_metrics_table(runs, layout))
    others = [f for f in figures if f.name not in headline]
    if others:
        sections.append("<h2>" + ("More figures" if headline else "Figures") + "</h2>\n"
                        + "\n".join(_figure_html(f) for f in others))

    methods = (
        "Groups are the combinations of swept keys; seeds are replicates. Only completed runs "
        "enter means, curves and tests; diverged and failed runs are counted and listed. "
        "95% CI: mean ± t(0.975, n−1)·std/√n. Each group is tested against the best group of its "
        "table (two-sided t-test: paired by seed when both groups have exactly the same seeds, "
        "otherwise Welch's), and the p-values are Holm-corrected within each table. "
        f"Target: {runs.target_fraction:g} × the best group's mean final value (for a "
        "lower-is-better metric, best / fraction); epochs to target average the runs that "
        "reached it. Primary metric: accuracy (classification) or R² (regression) on the test "
        "split, else validation, else training."
        + (" When datasets vary, each is compared separately." if runs.block_keys else "")
        + (" The learning rate of the tuned view is chosen on the validation split, never on "
           "the test split." if tuned is not None else ""))
    sections.append(f"<h2>Methods</h2><p class='note'>{html.escape(methods)}</p>")
    name = ", ".join(d.name for d in runs.sweep_dirs)

    return _TEMPLATES.get_template("index.html.j2").render(
        name=name, sweep_dirs=[str(d) for d in runs.sweep_dirs], sections=sections,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
