"""The report page states what the answer relies on: configuration, tuned values, provenance,
contents, links; the tune-then-confirm protocol's runs are used as the protocol says; the
why-they-differ and sensitivity figures are drawn from the runs' own data.
"""

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench import report
from lossbench.report import diagnostics, layout, tables, tuning
from lossbench.report.tables import load_runs

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)

PROVENANCE = {"python": "3.11.7", "platform": "Linux-x86_64", "git_commit": "abc123",
              "versions": {"lossbench": "0.2.0", "numpy": "2.1.0"},
              "blas": [{"internal_api": "openblas", "version": "0.3.27", "num_threads": 1}]}


def _config(loss: str, lr: float, seed: int) -> dict:
    return {"loss": {"_target_": f"synthetic.{loss}"}, "seed": seed,
            "model": {"_target_": "lossbench.models.MLP", "hidden_sizes": [16], "activation": "relu"},
            "optimizer": {"_target_": "lossbench.optim.SGD", "lr": lr, "batch_size": 32, "momentum": 0.0},
            "trainer": {"epochs": 5, "grad_clip": 0.0}, "progress": "none", "blas_threads": 1,
            "dataset": {"_target_": "lossbench.data.Bundled", "name": "digits", "test_size": 0.2, "val_size": 0.2}}


def _with_diagnostics(curve: dict, scale: float) -> dict:
    n = len(curve["train_loss"])
    return dict(curve, train_dz_norm_correct=list(scale * np.linspace(0.5, 0.1, n)),
                train_dz_norm_wrong=list(scale * np.linspace(0.9, 0.4, n)),
                train_wrong_vanishing_frac=list(np.linspace(0.0, 0.5 / scale, n).clip(0, 1)))


@pytest.fixture(scope="module")
def tuned_sweep(tmp_path_factory):
    """protocol=tune: arms loss {a, b}; tuning lr {0.01, 0.1, 1} on seeds 100-101 (a diverges at 1);
    confirmation at each arm's chosen rate on seeds 0-5; tuned.csv, sweep.json, missing.json."""
    sweep = tmp_path_factory.mktemp("tuned") / "sweep"
    best = {"a": 0.1, "b": 1.0}
    val = {("a", 0.01): 0.80, ("a", 0.1): 0.90, ("a", 1.0): 0.95, ("b", 0.01): 0.70, ("b", 0.1): 0.80, ("b", 1.0): 0.88}
    for (loss, lr), quality in val.items():
        for seed in (100, 101):
            diverged = (loss, lr, seed) == ("a", 1.0, 101)
            curve = sweeps.classification_curve(quality + 0.002 * (seed - 100))
            if diverged:
                curve = {name: values[:2] + [math.nan] for name, values in curve.items()}
            sweeps.write_run(sweep / f"tune-{loss}-{lr}-{seed}", [f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"],
                             curve, stage="tune", status="diverged" if diverged else "completed",
                             config=_config(loss, lr, seed), extra={"provenance": PROVENANCE})
    for loss in ("a", "b"):
        for seed in range(6):
            final = {"a": 0.9, "b": 0.86}[loss] + 0.003 * seed
            sweeps.write_run(sweep / f"confirm-{loss}-{seed}", [f"loss={loss}", f"optimizer.lr={best[loss]}", f"seed={seed}"],
                             _with_diagnostics(sweeps.classification_curve(final), {"a": 1.0, "b": 0.3}[loss]),
                             stage="confirm", config=_config(loss, best[loss], seed),
                             gradients=sweeps.gradient_table({"a": "bce", "b": "l2"}[loss]),
                             calibration=sweeps.calibration_15(), checksums=True,
                             extra={"provenance": PROVENANCE,
                                    "split_sizes": {"train": 1078, "val": 359, "test": 360}})
    pd.DataFrame({"loss": ["a", "b"], "optimizer.lr": [0.1, 1.0], "objective": "val_accuracy",
                  "objective_value": [0.9, 0.882], "n_settings": [3, 3], "edge_extended": [False, True]}
                 ).to_csv(sweep / "tuned.csv", index=False)
    (sweep / "sweep.json").write_text(json.dumps({"protocol": "tune", "arm_keys": ["loss"],
                                                  "tuned_keys": ["optimizer.lr"]}))
    (sweep / "missing.json").write_text(json.dumps({"missing": [
        {"overrides": ["loss=b", "optimizer.lr=1.0", "seed=6"], "reason": "worker died"}]}))
    index = report.build_report([sweep])
    return sweep, index


def test_only_confirmation_runs_are_compared(tuned_sweep):
    sweep, _ = tuned_sweep
    runs = load_runs([sweep])
    assert runs.group_keys == ["loss"]  # the tuned key is a setting of an arm, not a group
    assert set(runs.results["stage"]) == {"confirm"} and len(runs.results) == 12
    assert set(runs.tune_results["stage"]) == {"tune"} and len(runs.tune_results) == 12
    assert runs.tuned_keys == ["optimizer.lr"]
    stats_table = pd.read_csv(sweep / "report" / "stats.csv")
    assert set(stats_table["view"]) == {"shared"} and stats_table["n"].tolist() == [6, 6]
    results = tables.read_results(sweep)
    assert results["stage"].value_counts().to_dict() == {"confirm": 12, "tune": 12}


def test_page_states_the_configuration_tuned_values_and_provenance(tuned_sweep):
    _, index = tuned_sweep
    page = index.read_text()
    config = page[page.index("<section id=\"configuration\">"):page.index("<section id=\"runs\">")]
    for setting, value in [("optimizer", "SGD"), ("optimizer.batch_size", "32"), ("optimizer.momentum", "0"),
                           ("model", "MLP"), ("model.hidden_sizes", "[16]"), ("trainer.epochs", "5"),
                           ("dataset.name", "digits"), ("dataset.val_size", "0.2")]:
        assert f"<td>{setting}</td>\n      <td>{value}</td>" in config, setting
    assert "optimizer.lr</td>" not in config.split("Tuned per arm")[0]  # tuned, so not a fixed setting
    assert "progress" not in config and "blas_threads" not in config  # change no number
    assert "<td>1078</td>" in config and "<td>359</td>" in config  # split sizes
    tuned = config[config.index("Tuned per arm"):]
    assert "<td>val_accuracy</td>" in tuned and "<td>0.882</td>" in tuned
    assert config.count("openblas 0.3.27") == 1 and "abc123" in config  # provenance once
    assert page.lower().count("batch_size") >= 1


def test_page_has_contents_and_links(tuned_sweep):
    sweep, index = tuned_sweep
    page = index.read_text()
    toc = page[page.index("<nav class=\"toc\">"):page.index("</nav>")]
    ids = re.findall(r'<section id="([^"]+)">', page)
    assert re.findall(r'href="#([^"]+)"', toc) == ids
    assert {"question", "answer", "configuration", "runs", "files", "methods"} <= set(ids)
    for href in ("../results.csv", "../curves.csv", "../tuned.csv", "stats.csv", "gradients.png", "gradients.svg",
                 "../confirm-a-0", "../tune-a-1.0-101"):
        assert f"href='{href}'" in page, href
    for href in re.findall(r"href='([^'#]+)'", page):
        assert (index.parent / href).exists(), href


def test_missing_jobs_are_listed_with_status_missing(tuned_sweep):
    _, index = tuned_sweep
    page = index.read_text()
    runs = page[page.index("<section id=\"runs\">"):]
    assert "1 missing" in runs and "<td>loss=b optimizer.lr=1.0 seed=6</td>" in runs
    assert "<td>missing</td>\n      <td>worker died</td>" in runs


def test_time_axes_say_wall_clock(tuned_sweep):
    _, index = tuned_sweep
    assert "wall-clock time on the machine that ran the runs" in index.read_text()


def test_sensitivity_figure_marks_the_chosen_setting_and_divergence(tuned_sweep):
    sweep, index = tuned_sweep
    figure = tuning._sensitivity_figure(load_runs([sweep]))
    ax = figure.axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert [list(line.get_xdata()) for line in lines] == [[0.01, 0.1, 1.0]] * 2
    # the fixture's val curve ends 0.01 below its quality; a at 1.0: the completed seed 100 only
    np.testing.assert_allclose(lines[0].get_ydata(), [0.791, 0.891, 0.94])
    stars = [c for c in ax.collections if c.get_offsets().shape[0] and
             any(np.allclose(o, (0.1, 0.891)) or np.allclose(o, (1.0, 0.871)) for o in c.get_offsets())]
    assert len(stars) == 2  # a's chosen 0.1, b's chosen 1.0
    assert ax.get_xscale() == "log"
    assert (sweep / "report" / "sensitivity.png").is_file()


def test_why_they_differ_figure_plots_each_arm(tuned_sweep):
    sweep, _ = tuned_sweep
    runs = load_runs([sweep])
    lay = layout._layout(runs, None)
    figure = diagnostics._why_figure(runs, lay, runs.curves)
    assert [ax.get_title() for ax in figure.axes] == [
        "mean ‖dL/dz‖, correctly classified", "mean ‖dL/dz‖, wrongly classified",
        "mistakes with ‖dL/dz‖ < 1% of the largest"]
    wrong = figure.axes[1].get_lines()
    np.testing.assert_allclose(wrong[0].get_ydata(), np.linspace(0.9, 0.4, 6))        # arm a
    np.testing.assert_allclose(wrong[1].get_ydata(), 0.3 * np.linspace(0.9, 0.4, 6))  # arm b
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["loss=a", "loss=b"]
    assert (sweep / "report" / "why_they_differ.png").is_file()


def test_calibration_metrics_of_a_loss_without_a_link_are_not_applicable(tmp_path):
    for seed in (0, 1):
        for loss in ("ce", "hinge"):
            curve = sweeps.classification_curve(0.8 + 0.01 * seed)
            if loss == "hinge":  # no probabilistic link: NaN from the core, and no calibration.csv
                curve = {k: (v if not k.endswith(("log_loss", "brier", "ece")) else [math.nan] * len(v))
                         for k, v in curve.items()}
            sweeps.write_run(tmp_path / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"], curve,
                             calibration=sweeps.calibration_15() if loss == "ce" else None)
    page = report.build_report([tmp_path]).read_text()
    metrics = page[page.index('<section id="all-metrics">'):page.index('<section id="figures">')]
    assert metrics.count("not applicable") == 3  # log loss, Brier, ECE of hinge
    figure = diagnostics._reliability_figure(load_runs([tmp_path]), layout._layout(load_runs([tmp_path]), None))
    labels = [t.get_text() for t in figure.subfigs[0].legends[0].get_texts()]
    assert labels[1] == "loss=hinge: not applicable (no probabilistic link)"


def test_regression_metrics_are_labelled_as_standardised(tmp_path):
    for seed in (0, 1):
        sweeps.write_run(tmp_path / str(seed), ["loss=l2", f"seed={seed}"], sweeps.regression_curve(0.6),
                         task="regression")
    page = report.build_report([tmp_path]).read_text()
    assert "mean squared error (standardised target units²)" in page


def test_log_epoch_axis_when_curves_rise_in_the_first_few_percent(tmp_path):
    n = 200
    fast = 1 - 0.5 * np.exp(-np.arange(n) / 2.0)  # most of the rise within the first 2% of epochs
    for seed in (0, 1):
        sweeps.write_run(tmp_path / str(seed), ["loss=a", f"seed={seed}"],
                         {"train_loss": list(1.5 - fast), "test_accuracy": list(fast * 0.9)})
    runs = load_runs([tmp_path])
    from lossbench.report import figures

    figure = figures._curves_figure(runs, layout._layout(runs, None), runs.curves, "test_accuracy")
    assert figure.axes[0].get_xscale() == "symlog" and "log" in figure.axes[0].get_xlabel()
    slow = np.linspace(0.5, 0.9, 20)
    for seed in (0, 1):
        sweeps.write_run(tmp_path / "slow" / str(seed), ["loss=a", f"seed={seed}"],
                         {"train_loss": list(1.5 - slow), "test_accuracy": list(slow)})
    runs = load_runs([tmp_path / "slow"])
    figure = figures._curves_figure(runs, layout._layout(runs, None), runs.curves, "test_accuracy")
    assert figure.axes[0].get_xscale() == "linear"


def test_an_arm_tuned_at_the_grid_edge_is_said_in_words(tuned_sweep):
    _, index = tuned_sweep
    assert ("loss=b: the best setting was on the edge of the tuning grid, so the grid was extended "
            "beyond it") in index.read_text()
