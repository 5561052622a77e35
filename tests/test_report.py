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

from lossbench import report
from lossbench.results import load_runs

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
           "final_metrics", "final_metrics_shared_lr", "heatmap", "learning_rate", "gradients",
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
                 "Tuned: each group at its own best learning rate", "1 of 2"]:
        assert text in page, text


def test_gradient_figure_evaluates_each_loss_and_falls_back_to_two_outputs(classification_sweep, monkeypatch):
    sweep, _ = classification_sweep
    monkeypatch.syspath_prepend(str(sweep.parent / "modules"))
    figure, skipped = report._gradient_figure(load_runs([sweep]))
    assert skipped == []
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["l2", "bce", "ce(label_smoothing=0) [2 outputs (0, z)]"]
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
    code = "import lossbench.results, sys; print('matplotlib' in sys.modules)"
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
