"""lossbench.report: the files build_report writes, the gradient figure, the command line.

The sweeps are written by hand (tests/fixtures/sweeps.py) with failed, diverged and missing runs
present. The loss nodes point at tiny losses in a module written into a temporary folder on
sys.path, so the gradient figure is tested without depending on lossbench.losses.
"""

import importlib
import importlib.util
import math
import re
import subprocess
import sys
import textwrap
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

LOSS_MODULE = "lossbench_report_test_losses"
TINY_LOSSES = textwrap.dedent('''
    import numpy as np


    def _sigmoid(z):
        return 0.5 * (1 + np.tanh(0.5 * z))


    class SigmoidL2:
        """(sigmoid(z) - y)^2, one output only."""
        def __call__(self, outputs, targets):
            p, y = _sigmoid(outputs[:, 0]), targets.astype(float)
            return (p - y) ** 2, (2 * (p - y) * p * (1 - p))[:, None]


    class SigmoidBCE:
        """Binary cross-entropy on a logit, one output only."""
        def __call__(self, outputs, targets):
            z, y = outputs[:, 0], targets.astype(float)
            return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), (_sigmoid(z) - y)[:, None]


    class SoftmaxCE:
        """Cross-entropy on softmax; refuses one output like lossbench's ce."""
        def __init__(self, label_smoothing=0.0):
            self.label_smoothing = label_smoothing

        def __call__(self, outputs, targets):
            n, k = outputs.shape
            if k < 2:
                raise ValueError("loss 'ce' needs k >= 2 outputs (softmax); for one output use loss=bce")
            shifted = outputs - outputs.max(axis=1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            t = np.eye(k)[targets] * (1 - self.label_smoothing) + self.label_smoothing / k
            return -(t * log_p).sum(axis=1), np.exp(log_p) - t
''')
LOSS_NODES = {"l2": {"_target_": f"{LOSS_MODULE}.SigmoidL2"},
              "bce": {"_target_": f"{LOSS_MODULE}.SigmoidBCE"},
              "ce": {"_target_": f"{LOSS_MODULE}.SoftmaxCE", "label_smoothing": 0.0}}
FIGURES = ["curves_train_loss", "curves_test_accuracy", "curves_test_log_loss", "curves_test_ece",
           "final_metrics", "final_metrics_shared_lr", "heatmap_lr", "learning_rate", "gradients",
           "reliability"]


@pytest.fixture(scope="module")
def classification_sweep(tmp_path_factory):
    """loss {l2, bce, ce} x lr {0.1, 1}, seeds 0-1; one diverged, one failed, one missing run."""
    root = tmp_path_factory.mktemp("report")
    (root / "modules").mkdir()
    (root / "modules" / f"{LOSS_MODULE}.py").write_text(TINY_LOSSES)
    sweep = root / "sweep"
    calibration = sweeps.calibration_table([0.6, 0.75, 0.9], [0.55, 0.7, 0.88], [10, 20, 30])
    job = 0
    for loss, quality in [("l2", 0.85), ("bce", 0.92), ("ce", 0.9)]:
        for lr in (0.1, 1.0):
            for seed in (0, 1):
                overrides = [f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"]
                curve = sweeps.classification_curve(quality - 0.05 * (lr == 1.0) + 0.01 * seed)
                if (loss, lr, seed) == ("l2", 1.0, 1):
                    curve = {name: values[:3] + [math.nan] for name, values in curve.items()}
                    sweeps.write_run(sweep / str(job), overrides, curve, status="diverged",
                                     message="train_loss is nan at epoch 3", loss_node=LOSS_NODES[loss],
                                     calibration=calibration)
                elif (loss, lr, seed) == ("ce", 0.1, 0):
                    sweeps.write_run(sweep / str(job), overrides, None, status="failed",
                                     message="made-up failure for the test", loss_node=LOSS_NODES[loss])
                else:
                    sweeps.write_run(sweep / str(job), overrides, curve, loss_node=LOSS_NODES[loss],
                                     calibration=calibration)
                job += 1
    (sweep / str(job) / ".hydra").mkdir(parents=True)  # interrupted: no summary.json
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "modules"))
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


def test_gradient_figure_evaluates_each_loss_and_falls_back_to_two_outputs(classification_sweep, monkeypatch):
    sweep, _ = classification_sweep
    monkeypatch.syspath_prepend(str(sweep.parent / "modules"))
    figure, skipped = report._gradient_figure(load_runs([sweep]))
    assert skipped == []
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["l2", "bce", "ce(label_smoothing=0) [2 outputs (0, z)] (same curve as bce)"]
    target_1, target_0 = figure.axes
    z = np.linspace(-10, 10, 401)
    sigmoid = 1 / (1 + np.exp(-z))
    # with logits (0, z) softmax gives p_2 = sigmoid(z), so ce's d/dz equals bce's sigmoid(z) - y
    for line, expected in zip(target_1.get_lines()[:3],
                              [2 * (sigmoid - 1) * sigmoid * (1 - sigmoid), sigmoid - 1, sigmoid - 1]):
        np.testing.assert_allclose(line.get_xdata(), z)
        np.testing.assert_allclose(line.get_ydata(), expected, atol=1e-12)
    np.testing.assert_allclose(target_0.get_lines()[1].get_ydata(), sigmoid, atol=1e-12)


def test_gradient_figure_skips_a_loss_that_cannot_be_built(tmp_path):
    sweeps.write_run(tmp_path / "0", ["loss=nowhere", "seed=0"], sweeps.classification_curve(0.8),
                     loss_node={"_target_": "no_such_module_xyz.Loss"})
    figure, skipped = report._gradient_figure(load_runs([tmp_path]))
    assert figure is None
    assert len(skipped) == 1 and skipped[0].startswith("nowhere (could not be built")


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


CONF = Path(importlib.import_module("lossbench.conf").__file__).parent


@pytest.mark.parametrize("loss_file", sorted((CONF / "loss").glob("*.yaml")), ids=lambda path: path.stem)
def test_gradient_figure_draws_every_shipped_loss(loss_file, tmp_path):
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(loss_file))
    sweeps.write_run(tmp_path / "0", [f"loss={loss_file.stem}", "seed=0"], sweeps.classification_curve(0.8),
                     loss_node=node)
    figure, skipped = report._gradient_figure(load_runs([tmp_path]))
    assert skipped == []
    for ax in figure.axes:
        (line,) = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
        assert np.isfinite(line.get_ydata()).all()


@pytest.fixture(scope="module")
def noise_sweep(tmp_path_factory):
    """loss {l2, bce} x label_noise {0, 0.2, 0.4}, seeds 0-2, a question, report.headline and 3
    skipped jobs of one impossible combination; bce is best at every noise level but 0."""
    root = tmp_path_factory.mktemp("noise")
    (root / "modules").mkdir()
    (root / "modules" / f"{LOSS_MODULE}.py").write_text(TINY_LOSSES)
    sweep = root / "sweep"
    quality = {("l2", 0.0): 0.95, ("bce", 0.0): 0.90, ("l2", 0.2): 0.80, ("bce", 0.2): 0.88,
               ("l2", 0.4): 0.60, ("bce", 0.4): 0.85}
    for (loss, noise), final in quality.items():
        for seed in (0, 1, 2):
            config = {"loss": LOSS_NODES[loss], "dataset": {"label_noise": noise}, "seed": seed,
                      "question": "Which loss survives flipped labels?",
                      "report": {"target_fraction": 0.95, "headline": ["heatmap", "no_such_figure"]}}
            sweeps.write_run(sweep / f"{loss}-{noise}-{seed}",
                             [f"loss={loss}", f"dataset.label_noise={noise}", f"seed={seed}", "experiment=noise"],
                             sweeps.classification_curve(final + 0.004 * seed), loss_node=LOSS_NODES[loss],
                             config=config, calibration=sweeps.calibration_table([0.6, 0.9], [0.5, 0.86], [10, 30]))
    skipped = [{"overrides": ["loss=hinge", f"seed={seed}", "experiment=noise"],
                "message": "made-up reason hinge cannot run"} for seed in (0, 1, 2)]
    (sweep / "skipped.json").write_text(__import__("json").dumps({"skipped": skipped}))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "modules"))
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
    assert [ax.get_xlabel() for ax in figure.axes] == ["epoch"] * 3 + ["training time (s)"] * 3
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
    # 0.584, 0.588 against bce's 0.83, 0.834, 0.838, a constant difference, so p = 0
    assert "Worse (Holm p &lt; 0.05): loss=l2 0.584 (p &lt; 0.001)" in items[2][1]
    assert items[2][1].endswith("Epochs to the target (test accuracy ≥ 0.887): loss=bce never, loss=l2 never.")
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
    # pooled bins: |0.5 - 0.6| * 10/40 + |0.86 - 0.9| * 30/40 = 0.055 for every group
    assert [t.get_text() for t in panels[0].legends[0].get_texts()] == ["loss=bce: ECE 0.055", "loss=l2: ECE 0.055"]


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
    assert (f"loss=kl 0.890 (identical at every epoch of every seed, yet its final training loss is "
            f"{final_losses['kl']:.4f} against {final_losses['ce']:.4f})") in text
    assert "loss=l2 0.890 (the same final value in every seed, p 1.000)" in text
    assert res_stats.set_index("loss")["same_as_best"].to_dict() == {"ce": True, "kl": True, "l2": True}


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
