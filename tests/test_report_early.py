"""The early-stopped view (issue 10): each run read at its first best validation epoch.

``early_epoch`` / ``early_<split>_<metric>`` in results.csv, and, with ``report.early_stopping``
true, a second statistics table and one sentence per block on the report page.
"""

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench.report import build_report
from lossbench.report.page import EARLY_TITLE
from lossbench.report.tables import load_runs

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)

SEEDS = (0, 1, 2)


def _curve(loss: str, seed: int, splits=("train", "val", "test")) -> dict[str, list]:
    """ce peaks at epoch 2 on val (a tie at epoch 3: the first counts) and on test, then falls;
    l1 rises to its last epoch on both."""
    if loss == "ce":
        val = [0.5, 0.7, 0.9, 0.9, 0.75]
        test = [0.5, 0.68, 0.88 + 0.01 * seed, 0.8, 0.70]
    else:
        val = [0.5, 0.6, 0.7, 0.8, 0.85]
        test = [0.5, 0.6, 0.7, 0.8, 0.84 + 0.01 * seed]
    curve = {"train_loss": [1.0, 0.6, 0.4, 0.3, 0.2], "train_accuracy": [0.5, 0.7, 0.9, 0.95, 0.99]}
    if "val" in splits:
        curve.update(val_accuracy=val, val_loss=[1 - v for v in val])
    curve.update(test_accuracy=test, test_loss=[1 - v + 0.05 for v in test])
    return curve


def _sweep(root: Path, early_stopping: bool | None, splits=("train", "val", "test")) -> Path:
    sweep = root / "sweep"
    for loss in ("l1", "ce"):
        for seed in SEEDS:
            config = {"loss": {"_target_": f"synthetic.{loss}"}, "seed": seed, "report": {"headline": []}}
            if early_stopping is not None:
                config["report"]["early_stopping"] = early_stopping
            sweeps.write_run(sweep / f"{loss}-{seed}", [f"loss={loss}", f"seed={seed}"],
                             _curve(loss, seed, splits), config=config)
    return sweep


@pytest.fixture(scope="module")
def early_sweep(tmp_path_factory):
    sweep = _sweep(tmp_path_factory.mktemp("early_on"), True)
    return sweep, build_report([sweep])


@pytest.fixture(scope="module")
def final_only_sweep(tmp_path_factory):
    sweep = _sweep(tmp_path_factory.mktemp("early_off"), False)
    return sweep, build_report([sweep])


def test_early_columns_are_read_at_the_first_best_validation_epoch(early_sweep):
    sweep, _ = early_sweep
    results = pd.read_csv(sweep / "results.csv").set_index("run_id")
    for seed in SEEDS:
        ce, l1 = results.loc[f"sweep/ce-{seed}"], results.loc[f"sweep/l1-{seed}"]
        assert ce["early_epoch"] == 2  # val 0.9 at epochs 2 and 3: the first
        assert ce["early_test_accuracy"] == pytest.approx(0.88 + 0.01 * seed)
        assert ce["early_test_loss"] == pytest.approx(1 - (0.88 + 0.01 * seed) + 0.05)
        assert ce["early_val_accuracy"] == pytest.approx(0.9)
        assert ce["early_train_accuracy"] == pytest.approx(0.9)
        assert ce["final_test_accuracy"] == pytest.approx(0.70)
        assert l1["early_epoch"] == 4
        assert l1["early_test_accuracy"] == pytest.approx(l1["final_test_accuracy"])
    runs = load_runs([sweep])
    assert runs.early_stopping is True


def test_early_view_table_and_sentence_with_the_key_true(early_sweep):
    sweep, index = early_sweep
    page = index.read_text()
    answer = page[page.index("<h2>Answer</h2>"):page.index("<h2>Configuration</h2>")]
    assert EARLY_TITLE in answer
    early_part = answer[answer.index(EARLY_TITLE):]
    sentence = re.search(r"<li>(Read at each run&#x27;s best validation epoch.*?)</li>", early_part).group(1)
    # early view: ce 0.88/0.89/0.90 (mean 0.890) best, l1 0.84/0.85/0.86 (mean 0.850); paired
    # difference −0.040 at every seed; the exact sign-flip test on 3 seeds: p = 2/8 = 0.25
    assert "best loss=ce 0.890" in sentence
    assert "loss=l1 0.850 (difference −0.040" in sentence and "Holm p 0.250" in sentence
    assert "At the last epoch: best loss=l1 0.850 (a different best group" in sentence
    # the statistics of the early table are those of group_stats on early_test_accuracy
    stats = pd.read_csv(sweep / "report" / "stats.csv")
    early = stats[stats["view"] == "early"].set_index("group")
    assert set(early["metric"]) == {"early_test_accuracy"}
    assert early.loc["loss=ce", "mean"] == pytest.approx(0.89)
    assert bool(early.loc["loss=ce", "best"]) and early.loc["loss=l1", "rank"] == 2
    for _, row in early.iterrows():  # intervals inside the accuracy range
        assert 0.0 <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= 1.0
    assert "best val epoch (median)" in early_part
    final = stats[stats["view"] == "shared"].set_index("group")
    assert bool(final.loc["loss=l1", "best"])
    markdown = (sweep / "report" / "stats.md").read_text()
    assert "best validation epoch" in markdown and "final epoch" in markdown


def test_no_early_view_unless_the_key_is_true(final_only_sweep, tmp_path):
    sweep, index = final_only_sweep
    page = index.read_text()
    assert EARLY_TITLE not in page and "best validation epoch" not in page
    stats = pd.read_csv(sweep / "report" / "stats.csv")
    assert set(stats["view"]) == {"shared"}
    assert "early_test_accuracy" in pd.read_csv(sweep / "results.csv")  # the columns are always there
    missing = _sweep(tmp_path, None)  # key absent: off
    assert EARLY_TITLE not in build_report([missing]).read_text()


def test_without_a_val_split_no_early_view_and_no_traceback(tmp_path):
    sweep = _sweep(tmp_path, True, splits=("train", "test"))
    page = build_report([sweep]).read_text()
    results = pd.read_csv(sweep / "results.csv")
    assert results["early_epoch"].isna().all()
    assert page.count("No validation split: no early-stopped view") == 1
    assert "Read at each run" not in page
    stats = pd.read_csv(sweep / "report" / "stats.csv")
    assert set(stats["view"]) == {"shared"}


def test_regression_early_r2(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in SEEDS:
        curve = sweeps.regression_curve(0.8 + 0.01 * seed)
        curve["val_r2"] = [0.1, 0.5, 0.7, 0.6, 0.6, 0.6]  # best at epoch 2
        config = {"loss": {"_target_": "synthetic.l2"}, "seed": seed, "report": {"early_stopping": True}}
        sweeps.write_run(sweep / f"r-{seed}", ["loss=l2", f"seed={seed}"], curve, task="regression",
                         config=config)
    page = build_report([sweep]).read_text()
    results = pd.read_csv(sweep / "results.csv")
    assert (results["early_epoch"] == 2).all()
    expected = [sweeps.regression_curve(0.8 + 0.01 * seed)["test_r2"][2] for seed in SEEDS]
    np.testing.assert_allclose(results["early_test_r2"], expected)
    assert EARLY_TITLE in page and "Read at each run" in page
    early = pd.read_csv(sweep / "report" / "stats.csv").query("view == 'early'")
    assert early["ci_high"].max() <= 1.0 and not math.isnan(early["mean"].iloc[0])
