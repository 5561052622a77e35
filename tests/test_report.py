"""lossbench.report: the files build_report writes, the figures, the page, the command line.

The sweeps are written by hand (tests/fixtures/sweeps.py) with failed, diverged and missing runs
present; each run's gradients.csv is made up by the fixture, so the gradient figure is tested as
what it is: a plot of data the run wrote (the report never builds a loss).
"""

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from types import SimpleNamespace

from lossbench import report as report_package
from lossbench.report import answers, diagnostics, figures, layout, page, views
from lossbench.report.tables import load_runs

# the package's entry points plus the figure and sentence helpers the tests look into
report = SimpleNamespace(**{name: getattr(module, name) for module in (views, layout, figures, diagnostics, answers, page)
                            for name in dir(module) if not name.startswith('__')})
report.build_report, report.main, report.res = report_package.build_report, report_package.main, views

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)

FIGURES = ["curves_train_loss", "curves_test_accuracy", "curves_test_log_loss", "curves_test_ece",
           "final_metrics", "final_metrics_shared_lr", "heatmap_lr", "learning_rate", "gradients",
           "reliability", "why_they_differ"]


def _with_diagnostics(curve: dict, scale: float) -> dict:
    """Add the why-they-differ columns of metrics.csv to a fixture curve."""
    n = len(curve["train_loss"])
    return dict(curve, train_dz_norm_correct=list(scale * np.linspace(0.5, 0.1, n)),
                train_dz_norm_wrong=list(scale * np.linspace(0.9, 0.4, n)),
                train_wrong_vanishing_frac=list(np.linspace(0.0, 0.3 * scale, n)))


@pytest.fixture(scope="module")
def classification_sweep(tmp_path_factory):
    """loss {l2, bce, ce} x lr {0.1, 1}, seeds 0-1; one diverged, one failed, one missing run."""
    root = tmp_path_factory.mktemp("report")
    sweep = root / "sweep"
    calibration = sweeps.calibration_15()
    job = 0
    for loss, quality in [("l2", 0.85), ("bce", 0.92), ("ce", 0.9)]:
        for lr in (0.1, 1.0):
            for seed in (0, 1):
                overrides = [f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"]
                curve = _with_diagnostics(sweeps.classification_curve(quality - 0.05 * (lr == 1.0) + 0.01 * seed),
                                          {"l2": 0.2, "bce": 1.0, "ce": 1.0}[loss])
                gradients = sweeps.gradient_table(loss, k=3)
                if (loss, lr, seed) == ("l2", 1.0, 1):
                    curve = {name: values[:3] + [math.nan] for name, values in curve.items()}
                    sweeps.write_run(sweep / str(job), overrides, curve, status="diverged",
                                     message="train_loss is nan at epoch 3", calibration=calibration,
                                     gradients=gradients)
                elif (loss, lr, seed) == ("ce", 0.1, 0):
                    sweeps.write_run(sweep / str(job), overrides, None, status="failed",
                                     message="made-up failure for the test")
                else:
                    sweeps.write_run(sweep / str(job), overrides, curve, calibration=calibration,
                                     gradients=gradients, checksums=True)
                job += 1
    (sweep / str(job) / ".hydra").mkdir(parents=True)  # interrupted: no summary.json
    index = report.build_report([sweep])
    yield sweep, index


def test_build_report_writes_tables(classification_sweep):
    sweep, index = classification_sweep
    assert index == sweep / "report" / "index.html"
    results = pd.read_csv(sweep / "results.csv")
    assert len(results) == 12
    for column in ["loss", "optimizer.lr", "seed", "status", "message", "final_test_accuracy",
                   "best_test_accuracy", "target_epoch", "stop_epoch"]:
        assert column in results.columns
    assert sorted(results["status"].value_counts().items()) == [("completed", 10), ("diverged", 1), ("failed", 1)]
    curves = pd.read_csv(sweep / "curves.csv")
    assert {"run_id", "loss", "optimizer.lr", "seed", "status", "epoch", "test_accuracy"} <= set(curves.columns)
    assert len(curves) == 10 * 6 + 4  # completed runs 6 evaluations, the diverged one 4, the failed none
    assert set(pd.read_csv(sweep / "report" / "stats.csv")["view"]) == {"shared", "tuned"}


def test_without_figures_the_tables_and_answer_are_the_same_and_no_figure_is_left(classification_sweep, tmp_path):
    """report.figures=false / --no-figures: the same statistics, no figure file (an earlier build's are removed)."""
    import shutil

    sweep, _ = classification_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    assert list((copy / "report").glob("*.png"))
    assert report_package.page.main([str(copy), "--no-figures"]) == 0
    assert not list((copy / "report").glob("*.png")) and not list((copy / "report").glob("*.svg"))
    pd.testing.assert_frame_equal(pd.read_csv(copy / "report" / "stats.csv"), pd.read_csv(sweep / "report" / "stats.csv"))
    page_text = (copy / "report" / "index.html").read_text()
    assert "data:image/png" not in page_text and "Figures were not drawn (report.figures=false)" in page_text
    assert "own best learning rate" in page_text and "10 completed, 1 diverged, 1 failed" in page_text


def test_every_figure_is_written_as_png_and_svg(classification_sweep):
    sweep, _ = classification_sweep
    for name in FIGURES:
        png, svg = sweep / "report" / f"{name}.png", sweep / "report" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert "<svg" in svg.read_text()[:2000], name


def test_index_html_is_self_contained_and_reports_failures(classification_sweep):
    sweep, index = classification_sweep
    page = index.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert page.count("src='data:image/png;base64,") == len(list((sweep / "report").glob("*.png")))
    for text in ["train_loss is nan at epoch 3", "made-up failure for the test", "1 missing",
                 "10 completed, 1 diverged, 1 failed", "at a shared learning rate",
                 "own best learning rate", "1 of 2 completed", "(tuned: each at its own best learning rate)"]:
        assert text in page, text


def test_index_html_puts_the_answer_first(classification_sweep):
    _, index = classification_sweep
    page = index.read_text()
    order = [page.index(heading) for heading in
             ["<h2>Question</h2>", "<h2>Answer</h2>", "<h2>Runs</h2>", "<h2>Learning rate</h2>",
              "<h2>All final metrics", "<h2>More figures</h2>", "<h2>Methods</h2>"]]
    assert order == sorted(order)
    answer = page[page.index("<h2>Answer</h2>"):page.index("<h2>Runs</h2>")]
    # default headline with the learning rate swept and one other key: the lr heat map is not it,
    # the primary metric's curves are; one sentence names the best loss at its own rate
    assert "id='curves_test_accuracy'" in answer and "id='heatmap_lr'" not in answer
    assert answer.count("<li>") == 1 and "best loss=" in answer
    assert page.count("id='curves_test_accuracy'") == 1  # not repeated under "More figures"


def test_gradient_figure_draws_each_runs_gradients_csv(classification_sweep):
    sweep, _ = classification_sweep
    figure, notes = report._gradient_figure(load_runs([sweep]))
    assert notes == []
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["l2", "bce", "ce"]  # readable names, not reprs of config nodes
    # rows: k = 1 (l2 and bce; ce has no one-output form) and k = 3; columns: target 1, target 0
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles[0].startswith("k = 1 output, target 1") and titles[2].startswith("k = 3 outputs, target 1")
    k3_target1 = figure.axes[2]
    expected = sweeps.gradient_table("ce", k=3)
    expected = expected[(expected["k"] == 3) & (expected["target"] == 1)]
    ce_line = k3_target1.get_lines()[2]
    np.testing.assert_allclose(ce_line.get_xdata(), expected["z"])
    np.testing.assert_allclose(ce_line.get_ydata(), expected["dloss_dz"])
    k1_target0 = figure.axes[1]
    bce = sweeps.gradient_table("bce", k=3)
    np.testing.assert_allclose(k1_target0.get_lines()[1].get_ydata(),
                               bce[(bce["k"] == 1) & (bce["target"] == 0)]["dloss_dz"])


def test_gradient_figure_names_a_curve_equal_to_an_earlier_one(tmp_path):
    for job, loss in enumerate(["ce", "kl"]):
        sweeps.write_run(tmp_path / str(job), [f"loss={loss}", "seed=0"], sweeps.classification_curve(0.8),
                         gradients=sweeps.gradient_table("ce", k=3))
    figure, _ = report._gradient_figure(load_runs([tmp_path]))
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["ce", "kl (same curve as ce at k=3)"]


def test_gradient_figure_labels_losses_by_choice_and_settings(tmp_path):
    sweeps.write_run(tmp_path / "0", ["loss=ce", "loss.label_smoothing=0.1", "seed=0"],
                     sweeps.classification_curve(0.8), gradients=sweeps.gradient_table("ce", k=3))
    sweeps.write_run(tmp_path / "1", ["loss=ce", "loss.label_smoothing=0.0", "seed=0"],
                     sweeps.classification_curve(0.8), gradients=sweeps.gradient_table("bce", k=3))
    figure, _ = report._gradient_figure(load_runs([tmp_path]))
    # runs in sweep order (label_smoothing ascending)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["ce, label_smoothing 0",
                                                                      "ce, label_smoothing 0.1"]


def test_no_gradients_csv_means_no_gradient_figure(tmp_path):
    sweeps.write_run(tmp_path / "0", ["loss=l2", "seed=0"], sweeps.classification_curve(0.8))
    figure, notes = report._gradient_figure(load_runs([tmp_path]))
    assert figure is None and notes == []


def test_regression_sweep_merged_into_out_dir(tmp_path):
    first, second, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for seed in (0, 1):
        sweeps.write_run(first / str(seed), ["loss=l2", f"seed={seed}"],
                         sweeps.regression_curve(0.6 + 0.01 * seed), task="regression")
        sweeps.write_run(second / str(seed), ["loss=huber", f"seed={seed}"],
                         sweeps.regression_curve(0.7 - 0.01 * seed), task="regression")
    (out / "report").mkdir(parents=True)
    (out / "report" / "gradients.png").write_bytes(b"from an earlier build")  # must not linger
    index = report.build_report([first, second], out_dir=out)
    assert index == out / "report" / "index.html"
    assert len(pd.read_csv(out / "results.csv")) == 4
    names = {path.stem for path in (out / "report").glob("*.png")}
    assert {"curves_train_loss", "curves_test_mse", "curves_test_r2", "final_metrics"} <= names
    assert not names & {"gradients", "reliability", "learning_rate"}
    assert "test R²" in index.read_text()


def test_cli_prints_where_the_report_is(tmp_path, capsys):
    sweeps.write_run(tmp_path / "sweep" / "0", ["loss=l2", "seed=0"], sweeps.regression_curve(0.5),
                     task="regression")
    out_dir = tmp_path / "out"
    assert report.main([str(tmp_path / "sweep"), "--out", str(out_dir), "--target-fraction", "0.9"]) == 0
    out = capsys.readouterr().out
    assert str((out_dir / "report" / "index.html").resolve()) in out
    assert pd.read_csv(out_dir / "results.csv")["target_value"].tolist() == pytest.approx([0.45])


@pytest.mark.parametrize("make_dir, message", [
    (lambda root: root / "does-not-exist", "does not exist"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "no runs"),
], ids=["missing-dir", "dir-without-runs"])
def test_cli_bad_dir_exits_2_without_traceback(tmp_path, capsys, make_dir, message):
    bad = make_dir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and str(bad) in err and "Traceback" not in err


def test_cli_module_entry_point_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lossbench.report", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_cli_rejects_bad_target_fraction(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path), "--target-fraction", "1.5"])
    assert exit_info.value.code == 2
    assert "--target-fraction" in capsys.readouterr().err


def test_report_module_does_not_leak_matplotlib_into_results():
    code = "import lossbench.report.tables, lossbench.report.views, sys; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False"


@pytest.fixture(scope="module")
def noise_sweep(tmp_path_factory):
    """loss {l2, bce} x label_noise {0, 0.2, 0.4}, seeds 0-2, a question, report.headline and 3
    skipped jobs of one impossible combination; bce is best at every noise level but 0."""
    root = tmp_path_factory.mktemp("noise")
    sweep = root / "sweep"
    quality = {("l2", 0.0): 0.95, ("bce", 0.0): 0.90, ("l2", 0.2): 0.80, ("bce", 0.2): 0.88,
               ("l2", 0.4): 0.60, ("bce", 0.4): 0.85}
    for (loss, noise), final in quality.items():
        for seed in (0, 1, 2):
            config = {"loss": {"_target_": f"synthetic.{loss}"}, "dataset": {"label_noise": noise}, "seed": seed,
                      "question": "Which loss survives flipped labels?",
                      "report": {"target_fraction": 0.95, "headline": ["heatmap", "no_such_figure"]}}
            sweeps.write_run(sweep / f"{loss}-{noise}-{seed}",
                             [f"loss={loss}", f"dataset.label_noise={noise}", f"seed={seed}", "experiment=noise"],
                             sweeps.classification_curve(final + 0.004 * seed), config=config, calibration=sweeps.calibration_table([0.6, 0.9], [0.5, 0.86], [10, 30]))
    skipped = [{"overrides": ["loss=hinge", f"seed={seed}", "experiment=noise"],
                "message": "made-up reason hinge cannot run"} for seed in (0, 1, 2)]
    (sweep / "skipped.json").write_text(__import__("json").dumps({"skipped": skipped}))
    index = report.build_report([sweep])
    yield sweep, index


def test_two_keys_give_one_panel_per_value_of_the_last(noise_sweep):
    sweep, _ = noise_sweep
    runs = load_runs([sweep])
    layout = report._layout(runs, None)
    assert (layout.colour_keys, layout.panel_key) == (["loss"], "dataset.label_noise")
    figure = report._curves_figure(runs, layout, runs.curves, "test_accuracy")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["label_noise=0", "label_noise=0.2", "label_noise=0.4"] * 2  # epoch row, time row
    assert [ax.get_xlabel() for ax in figure.axes] == ["epoch"] * 3 + ["training time (s, wall-clock)"] * 3
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["loss=bce", "loss=l2"]  # folder order
    # within a panel: one line per loss, the mean over the three seeds
    l2_line = figure.axes[2].get_lines()[1]
    expected = np.mean([sweeps.classification_curve(0.60 + 0.004 * seed)["test_accuracy"] for seed in range(3)], axis=0)
    np.testing.assert_allclose(l2_line.get_ydata(), expected)


def test_answer_compares_within_each_panel_value_and_uses_the_configured_headline(noise_sweep):
    sweep, index = noise_sweep
    page = index.read_text()
    answer = page[page.index("<h2>Answer</h2>"):page.index("<h2>Runs</h2>")]
    items = re.findall(r"<li><b>(.*?)</b>: (.*?)</li>", answer)
    assert [where for where, _ in items] == ["label_noise=0", "label_noise=0.2", "label_noise=0.4"]
    assert items[0][1].startswith("best loss=l2") and items[2][1].startswith("best loss=bce")
    # test accuracy at 0.4 noise (the fixture's test curve ends 0.02 below its final value): l2 0.58,
    # 0.584, 0.588 against bce's 0.83, 0.834, 0.838, a constant difference. A t-test calls that
    # p = 0; the exact sign-flip test on 3 seeds cannot go below 2/2^3 = 0.25 (Holm over 1 pair)
    assert ("Not distinguishable from it with 3 seeds: loss=l2 0.584 (difference −0.250, interval "
            "not estimable with 3 seeds, Holm p 0.250).") in items[2][1]
    assert "needs at least 6 seeds" in items[2][1]
    assert items[2][1].endswith("loss=bce &gt; 5 (0 of 3 reached), loss=l2 &gt; 5 (0 of 3 reached).")
    assert "Which loss survives flipped labels?" in page
    assert "id='heatmap'" in answer and "no_such_figure" in answer  # named but missing: said so
    stats_table = pd.read_csv(sweep / "report" / "stats.csv")
    assert set(stats_table["compared_within"]) == {"dataset.label_noise"}
    assert stats_table["best"].sum() == 3  # one best loss per noise level


def test_skipped_combination_listed_once_without_shared_overrides(noise_sweep):
    _, index = noise_sweep
    page = index.read_text()
    assert page.count("made-up reason hinge cannot run") == 1
    runs_section = page[page.index("<h2>Runs</h2>"):]
    assert "<td>loss=hinge</td>" in runs_section and "<td>0, 1, 2</td>" in runs_section
    assert "experiment=noise" not in runs_section


def test_reliability_has_a_panel_per_value_with_ece_in_each_legend(noise_sweep):
    sweep, _ = noise_sweep
    runs = load_runs([sweep])
    figure = report._reliability_figure(runs, report._layout(runs, None))
    panels = figure.subfigs
    assert [sub.axes[0].get_title() for sub in panels] == [
        f"label_noise={noise}, test split" for noise in ("0", "0.2", "0.4")]
    # one ECE: the legend quotes the tables' number, the mean over seeds of each run's final
    # test ECE (the fixture's test ece curve ends at 0.1 exp(-2.5) + 0.02 + 0.02)
    ece = 0.1 * np.exp(-0.5 * 5) + 0.04
    assert [t.get_text() for t in panels[0].legends[0].get_texts()] == [f"loss=bce: ECE {ece:.3f}",
                                                                        f"loss=l2: ECE {ece:.3f}"]
    assert panels[0].legends[0].get_title().get_text() == "ECE (15 equal-width bins, top-label), mean over seeds"
    # bin counts under the diagram: one bar per bin with samples, per group, summed over seeds
    counts_ax = panels[0].axes[1]
    assert [round(bar.get_height()) for bar in counts_ax.patches] == [30, 90] * 2


def test_log_axis_labels_only_2_and_5_between_decades():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    report._log_axis(ax, np.array([0.05, 0.9]))
    minor = ax.yaxis.get_minor_formatter()
    assert [minor(v, 0) for v in (0.02, 0.03, 0.05, 0.07, 0.2, 0.3, 0.5)] == ["0.02", "", "0.05", "", "0.2", "", "0.5"]


def test_answer_says_when_two_groups_train_identically_but_report_different_losses(tmp_path):
    # ce and kl: the same accuracy at every epoch of every seed (test: 0.88, 0.89, 0.90 at the end),
    # training losses 0.5 apart;
    # l2 reaches the same final accuracy in every seed by a different path
    for seed in (0, 1, 2):
        base = sweeps.classification_curve(0.9 + 0.01 * seed)
        for loss, shift in (("ce", 0.5), ("kl", 0.0)):
            curve = dict(base, train_loss=[v + shift for v in base["train_loss"]])
            sweeps.write_run(tmp_path / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"], curve)
        other_path = dict(base, test_accuracy=[v * 0.99 for v in base["test_accuracy"][:-1]] + base["test_accuracy"][-1:])
        sweeps.write_run(tmp_path / f"l2{seed}", ["loss=l2", f"seed={seed}"], other_path)
    runs = load_runs([tmp_path])
    layout = report._layout(runs, None)
    (_, text), = report._answer_items(res_stats := report.res.shared_stats(runs), runs, layout, None)
    final_losses = {loss: np.mean([sweeps.classification_curve(0.9 + 0.01 * s)["train_loss"][-1] + shift
                                   for s in range(3)]) for loss, shift in (("ce", 0.5), ("kl", 0.0))}
    assert text.startswith("best loss=ce")
    assert (f"Identical to it at every seed (a tie): loss=kl (identical at every epoch of every seed, "
            f"yet its final training loss is {final_losses['kl']:.4f} against {final_losses['ce']:.4f}), "
            "loss=l2 (the same final value at every seed, 3 seeds).") in text
    assert "not distinguishable" not in text.lower()  # a tie is said as a tie
    assert res_stats.set_index("loss")["same_as_best"].to_dict() == {"ce": False, "kl": True, "l2": True}
    assert res_stats.set_index("loss")["verdict"].to_dict() == {"ce": "best", "kl": "tied", "l2": "tied"}


@pytest.mark.parametrize("sweep_keys", [
    [],                                                   # seeds only: one group
    ["optimizer.lr=0.1", "optimizer.lr=1.0"],             # only the learning rate: tuned view of one group
], ids=["seeds-only", "lr-only"])
def test_report_builds_for_sweeps_with_nothing_to_compare(tmp_path, sweep_keys):
    for job, key in enumerate(sweep_keys or ["loss=a"]):
        for seed in (0, 1):
            sweeps.write_run(tmp_path / f"{job}-{seed}", [key, f"seed={seed}"],
                             sweeps.classification_curve(0.8 + 0.05 * job + 0.01 * seed))
    index = report.build_report([tmp_path])
    page = index.read_text()
    answer = page[page.index("<h2>Answer</h2>"):page.index("<h2>Runs</h2>")]
    assert answer.count("<li>") == 1 and "test accuracy" in answer


def test_epochs_to_target_treat_unreached_runs_as_censored(tmp_path):
    # a reaches the target (0.95 x 0.9) at epoch 2 in every seed; b only in 2 of 5 seeds, at epoch 3
    for seed in range(5):
        sweeps.write_run(tmp_path / f"a{seed}", ["loss=a", f"seed={seed}"],
                         {"train_loss": [1.0, 0.5, 0.3, 0.2, 0.1], "test_accuracy": [0.5, 0.8, 0.86, 0.88, 0.9]})
        reach = seed < 2
        sweeps.write_run(tmp_path / f"b{seed}", ["loss=b", f"seed={seed}"],
                         {"train_loss": [1.0, 0.5, 0.3, 0.2, 0.1],
                          "test_accuracy": [0.5, 0.6, 0.7, 0.86 if reach else 0.8, 0.8]})
    page = report.build_report([tmp_path]).read_text()
    assert "loss=a 2 (5 of 5 reached), loss=b &gt; 4 (2 of 5 reached)" in page
    assert "<td>&gt; 4 (2 of 5 reached)</td>" in page  # the table, not an average of the two


def test_no_figure_prints_mathtext_source(classification_sweep):
    # labels are plain text (text.parse_math off), so log axes need plain tick labels too
    sweep, _ = classification_sweep
    for svg in (sweep / "report").glob("*.svg"):
        assert "mathdefault" not in svg.read_text() and "10^{" not in svg.read_text(), svg.name


def test_heat_map_scale_stays_in_range_and_is_not_shared_across_datasets(tmp_path):
    # accuracies near 1 with a wide seed spread: the widened colour scale must stop at 1
    for dataset, base in (("iris", 0.99), ("wine", 0.6)):
        for loss in ("a", "b"):
            for lr in (0.1, 1.0):
                for seed in (0, 1):
                    final = min(base + 0.005 * seed - 0.002 * (lr == 1.0) - 0.004 * (loss == "b"), 1.0)
                    sweeps.write_run(tmp_path / f"{dataset}{loss}{lr}{seed}",
                                     [f"dataset={dataset}", f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"],
                                     {"train_loss": [1.0, 0.5], "test_accuracy": [0.5, final],
                                      "val_accuracy": [0.5, final]})
    runs = load_runs([tmp_path])
    specs = {spec[0]: spec for spec in report._heatmap_specs(runs, None)}
    name, table, keys, two, panel_keys, title, outline = specs["heatmap"]
    figure = report._heatmap_figure(table, keys, two, panel_keys, title, outline)
    images = [ax.get_images()[0] for ax in figure.axes if ax.get_images()]
    assert len(images) == 2 and len(figure.axes) == 4  # two data sets, a colour bar each
    scales = [image.norm for image in images]
    assert all(norm.vmax <= 1.0 for norm in scales)
    assert scales[0].vmin != scales[1].vmin  # not one scale for iris and wine
