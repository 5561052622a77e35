"""lossbench.report.tables and .views: reading sweeps, aggregation arithmetic, statistics, tuned view.

Every sweep is written by hand into tmp_path (tests/fixtures/sweeps.py); expected numbers are
computed by hand in the test or by SciPy, never taken from lossbench.report itself.
"""

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from types import SimpleNamespace

from lossbench.report import common, comparisons, tables, views
from lossbench.report.stats import bounded_mean_ci
from lossbench.report.tables import NoRunsError, load_runs

# one namespace over the three modules, so the tests read as before the split
results = SimpleNamespace(**{name: getattr(module, name) for module in (common, comparisons, views, tables)
                             for name in dir(module) if not name.startswith('__')})

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)

T_975_DF2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom (table value)
T_975_DF3 = 3.182446305284263  # ... 3 degrees of freedom


def _accuracy_curve(test_accuracy, val_accuracy=None, train_loss=None):
    """A run's metrics: test accuracy as given, val accuracy (optional), a falling train loss."""
    n = len(test_accuracy)
    curve = {"train_loss": train_loss or list(np.linspace(1.0, 0.2, n)),
             "train_accuracy": list(np.linspace(0.5, 0.95, n)),
             "test_accuracy": test_accuracy}
    if val_accuracy is not None:
        curve["val_accuracy"] = val_accuracy
    return curve


@pytest.fixture
def three_seed_sweep(tmp_path):
    """loss in {a, b, c}, seeds 0-2, all completed; final test accuracies chosen by hand."""
    finals = {"a": [0.90, 0.80, 0.70], "b": [0.70, 0.72, 0.60], "c": [0.50, 0.61, 0.55]}
    job = 0
    for loss, values in finals.items():
        for seed, final in enumerate(values):
            sweeps.write_run(tmp_path / "sweep" / str(job), [f"loss={loss}", f"seed={seed}", "dataset=iris"],
                             _accuracy_curve([0.5, 0.6, 0.7, final]))
            job += 1
    return tmp_path / "sweep", finals


# --- reading ---------------------------------------------------------------------------------


def test_results_table_has_one_row_per_run_with_key_columns(three_seed_sweep):
    sweep, finals = three_seed_sweep
    runs = load_runs([sweep])
    assert runs.group_keys == ["loss"]  # dataset is constant, seed is the replicate key
    assert len(runs.results) == 9
    assert runs.results["loss"].tolist() == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert runs.results["seed"].tolist() == [0, 1, 2] * 3
    assert runs.results["final_test_accuracy"].tolist() == pytest.approx(sum(finals.values(), []))
    assert runs.results["best_test_accuracy"].tolist() == pytest.approx(
        [max(0.7, v) for v in sum(finals.values(), [])])
    assert set(runs.results["status"]) == {"completed"}
    assert (runs.results["primary_metric"] == "test_accuracy").all()


def test_curves_table_is_long_format_with_run_id_and_keys(three_seed_sweep):
    sweep, _ = three_seed_sweep
    runs = load_runs([sweep])
    assert len(runs.curves) == 9 * 4
    assert list(runs.curves.columns[:5]) == ["run_id", "loss", "seed", "group", "status"]
    first = runs.curves[runs.curves["run_id"] == "sweep/0"]
    assert first["epoch"].tolist() == [0, 1, 2, 3]
    assert first["test_accuracy"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.9])


def test_hydra_keys_never_define_groups(tmp_path):
    for job, (loss, n_jobs) in enumerate([("a", 1), ("b", 2)]):
        sweeps.write_run(tmp_path / str(job), [f"loss={loss}", "seed=0", f"hydra.launcher.n_jobs={n_jobs}"],
                         _accuracy_curve([0.5, 0.8]))
    assert load_runs([tmp_path]).group_keys == ["loss"]


def test_missing_runs_are_reported_and_other_folders_ignored(three_seed_sweep):
    sweep, _ = three_seed_sweep
    (sweep / "9" / ".hydra").mkdir(parents=True)  # started, interrupted: no summary.json
    (sweep / "report").mkdir()  # not a run at all
    runs = load_runs([sweep])
    assert runs.missing == [sweep / "9"]
    assert len(runs.results) == 9


def test_merging_two_sweep_dirs_fills_unswept_keys_from_the_config(tmp_path):
    first, second = tmp_path / "machine1", tmp_path / "machine2"
    for seed in (0, 1):  # machine 1 did not override the learning rate: its config says 0.1
        sweeps.write_run(first / str(seed), ["loss=a", f"seed={seed}"], _accuracy_curve([0.5, 0.8]),
                         config={"loss": {"_target_": "x.A"}, "optimizer": {"lr": 0.1}})
        sweeps.write_run(second / str(seed), ["loss=b", "optimizer.lr=0.01", f"seed={seed}"],
                         _accuracy_curve([0.5, 0.7]))
    runs = load_runs([first, second])
    assert runs.group_keys == ["loss", "optimizer.lr"]
    assert runs.results["run_id"].tolist() == ["machine1/0", "machine1/1", "machine2/0", "machine2/1"]
    assert runs.results["optimizer.lr"].tolist() == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert runs.key_values == {"loss": ["a", "b"], "optimizer.lr": [0.01, 0.1]}


def test_duplicate_config_hash_keeps_the_completed_run(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    sweeps.write_run(old / "0", ["loss=a", "seed=0"], _accuracy_curve([0.5, 0.9]), config_hash="h0",
                     mtime=2_000_000_000)  # newer, but failed
    sweeps.write_run(old / "0", ["loss=a", "seed=0"], None, status="failed", message="boom",
                     config_hash="h0", mtime=2_000_000_000)
    sweeps.write_run(new / "0", ["loss=a", "seed=0"], _accuracy_curve([0.5, 0.8]), config_hash="h0",
                     mtime=1_000_000_000)
    sweeps.write_run(new / "1", ["loss=b", "seed=0"], _accuracy_curve([0.5, 0.7]), config_hash="h1")
    runs = load_runs([old, new])
    assert runs.results["run_id"].tolist() == ["new/0", "new/1"]
    assert runs.duplicates == [old / "0"]


def test_duplicate_completed_runs_keep_the_newest(tmp_path):
    sweeps.write_run(tmp_path / "a" / "0", ["loss=a", "seed=0"], _accuracy_curve([0.5, 0.9]),
                     config_hash="h0", mtime=1_000_000_000)
    sweeps.write_run(tmp_path / "b" / "0", ["loss=a", "seed=0"], _accuracy_curve([0.5, 0.6]),
                     config_hash="h0", mtime=1_500_000_000)
    runs = load_runs([tmp_path / "a", tmp_path / "b"])
    assert runs.results["run_id"].tolist() == ["b/0"]
    assert runs.results["final_test_accuracy"].tolist() == pytest.approx([0.6])


def test_missing_or_empty_sweep_dir_raises(tmp_path):
    with pytest.raises(NoRunsError, match="does not exist"):
        load_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoRunsError, match="no runs"):
        load_runs([tmp_path / "empty"])


def test_bad_target_fraction_raises(three_seed_sweep):
    with pytest.raises(ValueError, match="target_fraction"):
        load_runs([three_seed_sweep[0]], target_fraction=1.5)


# --- aggregation arithmetic ------------------------------------------------------------------


def test_group_mean_std_and_bounded_interval(three_seed_sweep):
    runs = load_runs([three_seed_sweep[0]])
    table = results.shared_stats(runs).set_index("loss")
    a = table.loc["a"]
    assert (a["n"], a["completed"]) == (3, "3 of 3")
    assert a["mean"] == pytest.approx(0.8)
    assert a["std"] == pytest.approx(0.1)  # sqrt(((0.1)^2 + 0 + (0.1)^2) / 2)
    expected = bounded_mean_ci([0.90, 0.80, 0.70], 0.0, 1.0)  # the stats module's own tests check it
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((expected.low, expected.high))
    assert a["ci_method"].startswith("expanded percentile bootstrap")
    b = table.loc["b"]  # 0.70, 0.72, 0.60: mean 2.02/3, deviations 0.0267, 0.0467, -0.0733
    mean_b = 2.02 / 3
    std_b = math.sqrt(((0.70 - mean_b) ** 2 + (0.72 - mean_b) ** 2 + (0.60 - mean_b) ** 2) / 2)
    assert (b["mean"], b["std"]) == pytest.approx((mean_b, std_b))


def test_interval_stays_inside_the_metric_range(tmp_path):
    # accuracies 1.0, 1.0, 0.9: mean ± t std/sqrt(n) reaches 1.11; the report's interval must not
    for seed, final in enumerate([1.0, 1.0, 0.9]):
        sweeps.write_run(tmp_path / str(seed), ["loss=a", f"seed={seed}"], _accuracy_curve([0.5, final]))
    row = results.shared_stats(load_runs([tmp_path])).iloc[0]
    t_high = row["mean"] + T_975_DF2 * row["std"] / math.sqrt(3)
    assert t_high > 1.0
    assert 0.9 <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= 1.0


def test_target_epoch_is_first_epoch_reaching_fraction_of_best_group_mean(tmp_path):
    # best group a: mean final 0.8 -> target 0.95 * 0.8 = 0.76
    curves = {0: [0.5, 0.7, 0.77, 0.9], 1: [0.5, 0.6, 0.7, 0.8], 2: [0.5, 0.6, 0.65, 0.7]}
    for seed, curve in curves.items():
        sweeps.write_run(tmp_path / f"a{seed}", ["loss=a", f"seed={seed}"], _accuracy_curve(curve))
        sweeps.write_run(tmp_path / f"b{seed}", ["loss=b", f"seed={seed}"],
                         _accuracy_curve([0.5, 0.55, 0.6, 0.6]))
    runs = load_runs([tmp_path])
    a = runs.results[runs.results["loss"] == "a"]
    assert a["target_value"].tolist() == pytest.approx([0.76] * 3)
    assert a["target_epoch"].tolist()[:2] == [2, 3]
    assert math.isnan(a["target_epoch"].tolist()[2])  # 0.7 never reaches 0.76
    assert a["target_time_s"].tolist()[:2] == pytest.approx([1.0, 1.5])  # 0.5 s per epoch
    assert runs.results[runs.results["loss"] == "b"]["target_epoch"].isna().all()


def test_target_fraction_is_configurable(tmp_path):
    for seed in (0, 1):
        sweeps.write_run(tmp_path / str(seed), ["loss=a", f"seed={seed}"],
                         _accuracy_curve([0.5, 0.65, 0.79, 0.8]))
        sweeps.write_run(tmp_path / f"b{seed}", ["loss=b", f"seed={seed}"], _accuracy_curve([0.5, 0.7]))
    runs = load_runs([tmp_path], target_fraction=0.75)  # target 0.6
    assert runs.results["target_value"].tolist() == pytest.approx([0.6] * 4)
    assert runs.results.set_index("run_id")["target_epoch"].to_dict() == {
        f"{tmp_path.name}/0": 1, f"{tmp_path.name}/1": 1, f"{tmp_path.name}/b0": 1, f"{tmp_path.name}/b1": 1}


@pytest.mark.parametrize(("best", "fraction", "higher", "expected"), [
    (0.8, 0.95, True, 0.76),            # accuracy: 95% of the best
    (0.2, 0.95, False, 0.2 / 0.95),      # a loss: within 1/0.95 of the best
    (-0.5, 0.9, True, -0.55),            # negative R²: 10% of |best| below it
    (0.0, 0.9, False, 0.0),              # a perfect loss of 0 must be reached exactly
], ids=["accuracy", "loss", "negative-r2", "zero-loss"])
def test_target_threshold(best, fraction, higher, expected):
    assert results.target_threshold(best, fraction, higher) == pytest.approx(expected)


def test_first_reached_for_lower_is_better_and_ignores_nan():
    values = np.array([1.0, np.nan, 0.3, 0.2])
    assert results.first_reached(values, 0.25, higher=False) == 3
    assert results.first_reached(values, 0.35, higher=False) == 2
    assert results.first_reached(values, 0.1, higher=False) is None


@pytest.mark.parametrize(("task", "available", "expected"), [
    ("classification", ["train_accuracy", "val_accuracy", "test_accuracy"], "test_accuracy"),
    ("classification", ["train_accuracy", "val_accuracy"], "val_accuracy"),
    ("classification", ["train_accuracy"], "train_accuracy"),
    ("regression", ["train_r2", "test_r2", "test_mse"], "test_r2"),
], ids=["test", "val-if-no-test", "train-if-only-train", "regression-r2"])
def test_primary_metric(task, available, expected):
    assert results.primary_metric(task, available) == expected


# --- statistics ------------------------------------------------------------------------------


def _sign_flip_p(differences) -> float:
    """Two-sided exact sign-flip p of the mean difference, by enumerating every sign pattern."""
    d = np.asarray(differences, float)
    observed = abs(d.sum())
    patterns = list(itertools.product([1, -1], repeat=d.size))
    return sum(abs(np.dot(s, d)) >= observed - 1e-12 for s in patterns) / len(patterns)


def test_all_pairs_are_compared_with_exact_sign_flip_and_holm(three_seed_sweep):
    sweep, finals = three_seed_sweep
    table = results.shared_stats(load_runs([sweep])).set_index("loss")
    # a is best; the family is all three pairs (a-b, a-c, b-c), not the two against the best
    p = {pair: _sign_flip_p(np.subtract(finals[pair[0]], finals[pair[1]])) for pair in [("a", "b"), ("a", "c"), ("b", "c")]}
    assert p == {("a", "b"): 0.25, ("a", "c"): 0.25, ("b", "c"): 0.25}  # 3 seeds: 2/2^3 at best
    assert table.loc["b", "p_value"] == pytest.approx(0.25)
    assert table.loc["b", "p_holm"] == pytest.approx(0.75)  # Holm over 3 pairs: 3 * 0.25, monotone
    assert table.loc["c", "p_holm"] == pytest.approx(0.75)
    assert table.loc["b", "min_p"] == pytest.approx(0.25)
    assert table.loc["b", "test"].startswith("exact sign-flip test")
    assert table.loc["b", "difference"] == pytest.approx(np.mean(np.subtract(finals["b"], finals["a"])))
    assert table.loc["b", "verdict"] == table.loc["c", "verdict"] == "not distinguishable"
    assert table.loc["a", "verdict"] == "best" and math.isnan(table.loc["a", "p_value"])
    assert not table["can_reject"].any() and (table["seeds_needed"] == 7).all()  # 3 groups need 7 seeds


def test_enough_seeds_make_a_real_difference_worse(tmp_path):
    rng = np.random.default_rng(0)
    for seed in range(10):
        base = 0.8 + 0.01 * rng.standard_normal()
        for loss, shift in (("a", 0.0), ("b", -0.05)):
            sweeps.write_run(tmp_path / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"],
                             _accuracy_curve([0.5, base + shift]))
    row = results.shared_stats(load_runs([tmp_path])).set_index("loss").loc["b"]
    assert row["verdict"] == "worse"
    assert row["p_holm"] == pytest.approx(2 / 2 ** 10)  # every difference negative, one pair
    # a constant difference: its interval is that single value
    assert (row["difference"], row["diff_low"], row["diff_high"]) == pytest.approx((-0.05,) * 3)


def test_pairs_use_the_seeds_both_completed_and_diverged_runs_are_counted_not_averaged(three_seed_sweep):
    sweep, finals = three_seed_sweep
    sweeps.write_run(sweep / "9", ["loss=d", "seed=0", "dataset=iris"], _accuracy_curve([0.5, 0.6, 0.62]))
    sweeps.write_run(sweep / "10", ["loss=d", "seed=1", "dataset=iris"], _accuracy_curve([0.5, 0.6, 0.66]))
    sweeps.write_run(sweep / "11", ["loss=d", "seed=2", "dataset=iris"],
                     _accuracy_curve([0.5, math.inf], train_loss=[1.0, math.inf]),
                     status="diverged", message="train_loss is inf at epoch 1")
    table = results.shared_stats(load_runs([sweep])).set_index("loss")
    d = table.loc["d"]
    assert (d["n_runs"], d["n_completed"], d["n_diverged"], d["n_failed"], d["n"]) == (3, 2, 1, 0, 2)
    assert d["completed"] == "2 of 3"
    assert "seed 2 diverged: train_loss is inf at epoch 1" in d["messages"]
    assert d["mean"] == pytest.approx(0.64)
    assert d["std"] == pytest.approx(math.sqrt(2 * 0.02 ** 2))
    assert d["n_paired"] == 2  # seeds 0 and 1 against a's seeds 0 and 1
    assert d["difference"] == pytest.approx(np.mean([0.62 - 0.90, 0.66 - 0.80]))
    assert d["p_value"] == pytest.approx(_sign_flip_p([0.62 - 0.90, 0.66 - 0.80]))


def test_failed_runs_are_counted_with_their_message(three_seed_sweep):
    sweep, _ = three_seed_sweep
    for seed in (0, 1, 2):
        sweeps.write_run(sweep / f"e{seed}", ["loss=e", f"seed={seed}", "dataset=iris"], None,
                         status="failed", message="loss 'e' needs k >= 2 outputs")
    runs = load_runs([sweep])
    assert runs.status_counts == {"completed": 9, "diverged": 0, "failed": 3}
    e = results.shared_stats(runs).set_index("loss").loc["e"]
    assert (e["n_failed"], e["n"], e["completed"]) == (3, 0, "0 of 3")
    assert math.isnan(e["mean"]) and math.isnan(e["rank"])
    assert e["messages"].count("needs k >= 2") == 3


# --- curves ----------------------------------------------------------------------------------


def test_curve_stats_exclude_diverged_runs(tmp_path):
    sweeps.write_run(tmp_path / "0", ["loss=a", "seed=0"], _accuracy_curve([0.5, 0.6, 0.9]))
    sweeps.write_run(tmp_path / "1", ["loss=a", "seed=1"], _accuracy_curve([0.5, 0.8, 0.7]))
    sweeps.write_run(tmp_path / "2", ["loss=a", "seed=2"], _accuracy_curve([0.5, 0.2, math.nan]),
                     status="diverged", message="nan")
    sweeps.write_run(tmp_path / "3", ["loss=b", "seed=0"], _accuracy_curve([0.5, 0.5, 0.5]))
    runs = load_runs([tmp_path])
    assert len(runs.curves) == 12  # the raw table keeps every row, with its status
    curve = results.curve_stats(runs.curves, "test_accuracy", runs.group_keys)
    a = curve[curve["loss"] == "a"].set_index("epoch")
    assert a["n"].tolist() == [2, 2, 2]
    assert a["mean"].tolist() == pytest.approx([0.5, 0.7, 0.8])
    assert a.loc[1, "std"] == pytest.approx(math.sqrt(0.02))
    band = bounded_mean_ci([0.6, 0.8], 0.0, 1.0, method="logit-t")
    assert (a.loc[1, "ci_low"], a.loc[1, "ci_high"]) == pytest.approx((band.low, band.high))
    assert 0.0 <= a["ci_low"].min() and a["ci_high"].max() <= 1.0  # a t band would pass 1 here
    assert a["time_s"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    b = curve[curve["loss"] == "b"]
    assert b["n"].tolist() == [1, 1, 1] and b["ci_low"].isna().all()


# --- views -----------------------------------------------------------------------------------


def _lr_sweep(root, with_val=True):
    """loss a is best at lr 0.1 and loss b at lr 0.01 on validation; test accuracy disagrees."""
    val = {("a", 0.1): 0.90, ("a", 0.01): 0.80, ("b", 0.1): 0.60, ("b", 0.01): 0.85}
    test = {("a", 0.1): 0.70, ("a", 0.01): 0.95, ("b", 0.1): 0.90, ("b", 0.01): 0.75}
    job = 0
    for (loss, lr), val_final in val.items():
        for seed in (0, 1):
            noise = 0.01 * seed
            sweeps.write_run(root / str(job), [f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"],
                             _accuracy_curve([0.5, test[loss, lr] + noise],
                                             [0.5, val_final + noise] if with_val else None))
            job += 1
    return root


def test_tuned_view_picks_each_groups_best_validation_lr(tmp_path):
    runs = load_runs([_lr_sweep(tmp_path)])
    tuned = results.tuned_view(runs)
    best = tuned.best_lr.set_index("loss")
    assert best.loc["a", "optimizer.lr"] == pytest.approx(0.1)
    assert best.loc["b", "optimizer.lr"] == pytest.approx(0.01)
    assert set(best["selected_on"]) == {"final_val_accuracy"}
    assert best.loc["b", "mean"] == pytest.approx(0.855)
    assert tuned.notes == []
    chosen = tuned.results[["loss", "optimizer.lr"]].drop_duplicates().values.tolist()
    assert chosen == [["a", 0.1], ["b", 0.01]]
    table = results.tuned_stats(runs, tuned).set_index("loss")
    assert table.loc["a", "mean"] == pytest.approx(0.705)  # test accuracy at lr 0.1
    assert table.loc["b", "mean"] == pytest.approx(0.755)  # test accuracy at lr 0.01
    assert table.loc["b", "rank"] == 1


def test_tuned_view_falls_back_to_train_and_says_so(tmp_path):
    runs = load_runs([_lr_sweep(tmp_path, with_val=False)])
    tuned = results.tuned_view(runs)
    assert set(tuned.best_lr["selected_on"]) == {"final_train_accuracy"}
    assert any("No validation split" in note for note in tuned.notes)


def test_no_tuned_view_without_lr_sweep(three_seed_sweep):
    assert results.tuned_view(load_runs([three_seed_sweep[0]])) is None


def test_shared_view_compares_within_each_learning_rate(tmp_path):
    table = results.shared_stats(load_runs([_lr_sweep(tmp_path)]))
    ranks = {(row["loss"], row["optimizer.lr"]): row["rank"] for _, row in table.iterrows()}
    assert ranks == {("a", 0.01): 1, ("b", 0.01): 2, ("a", 0.1): 2, ("b", 0.1): 1}


def test_datasets_are_compared_separately(tmp_path):
    for seed in (0, 1):
        for dataset, loss, final in [("iris", "a", 0.9), ("iris", "b", 0.8),
                                     ("wine", "a", 0.5), ("wine", "b", 0.6)]:
            sweeps.write_run(tmp_path / f"{dataset}{loss}{seed}",
                             [f"dataset={dataset}", f"loss={loss}", f"seed={seed}"],
                             _accuracy_curve([0.4, final]))
    runs = load_runs([tmp_path])
    assert runs.block_keys == ["dataset"]
    table = results.shared_stats(runs)
    best = table[table["best"]][["dataset", "loss"]].values.tolist()
    assert best == [["iris", "a"], ["wine", "b"]]
    targets = runs.results.groupby("dataset")["target_value"].first().to_dict()
    assert targets == pytest.approx({"iris": 0.95 * 0.9, "wine": 0.95 * 0.6})


def test_runs_follow_the_value_order_typed_in_the_sweep(tmp_path):
    # job folders sort alphabetically (bce, ce, l2); multirun.yaml says the user typed l2,bce,ce
    for loss in ("bce", "ce", "l2"):
        for seed in (1, 0):
            sweeps.write_run(tmp_path / f"loss={loss},seed={seed}", [f"loss={loss}", f"seed={seed}"],
                             _accuracy_curve([0.5, 0.8]))
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - loss=l2,bce,ce\n    - seed=0,1\n")
    runs = load_runs([tmp_path])
    assert runs.results["loss"].tolist() == ["l2", "l2", "bce", "bce", "ce", "ce"]
    assert runs.results["seed"].tolist() == [0, 1] * 3
    assert runs.key_values == {"loss": ["l2", "bce", "ce"]}
    assert results.shared_stats(runs)["loss"].tolist() == ["l2", "bce", "ce"]


def test_compare_within_ranks_and_tests_inside_each_value_of_the_key(tmp_path):
    # loss a beats b without noise, b beats a at noise 0.4; over all four groups a/0 would be best
    finals = {("a", 0.0): [0.90, 0.92], ("b", 0.0): [0.80, 0.81],
              ("a", 0.4): [0.60, 0.64], ("b", 0.4): [0.70, 0.73]}
    for (loss, noise), values in finals.items():
        for seed, final in enumerate(values):
            sweeps.write_run(tmp_path / f"{loss}{noise}{seed}",
                             [f"loss={loss}", f"dataset.label_noise={noise}", f"seed={seed}"],
                             _accuracy_curve([0.5, final]))
    runs = load_runs([tmp_path])
    overall = results.shared_stats(runs)  # rows: a/0, a/0.4, b/0, b/0.4
    assert overall["rank"].tolist() == [1, 4, 2, 3]
    within = results.shared_stats(runs, compare_within=["dataset.label_noise"])
    within = within.set_index(["loss", "dataset.label_noise"])
    assert within["rank"].to_dict() == {("a", 0.0): 1, ("b", 0.0): 2, ("a", 0.4): 2, ("b", 0.4): 1}
    assert within["best"].to_dict() == {("a", 0.0): True, ("b", 0.0): False, ("a", 0.4): False, ("b", 0.4): True}
    p_a_at_04 = _sign_flip_p(np.subtract(finals["a", 0.4], finals["b", 0.4]))
    assert p_a_at_04 == 0.5  # two seeds: 2/2^2
    assert within.loc[("a", 0.4), "p_value"] == pytest.approx(p_a_at_04)
    assert within.loc[("a", 0.4), "p_holm"] == pytest.approx(p_a_at_04)  # one pair per value: no correction


def test_tuned_stats_compare_within(tmp_path):
    runs = load_runs([_lr_sweep(tmp_path)])
    table = results.tuned_stats(runs, results.tuned_view(runs), compare_within=["loss"])
    assert table["rank"].tolist() == [1, 1]  # each loss alone in its comparison
    assert table["best"].all()


def test_skipped_combinations_one_row_per_combination_without_shared_overrides(tmp_path):
    for loss in ("bce", "l2"):
        for seed in (0, 1, 2):
            sweeps.write_run(tmp_path / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}", "experiment=study"],
                             _accuracy_curve([0.5, 0.8]))
    message = "loss 'ce' needs k >= 2 outputs (softmax); for one output use loss=bce"
    skipped = [{"overrides": ["loss=ce", f"seed={seed}", "experiment=study"], "message": message}
               for seed in (2, 0, 1, 10)]
    skipped.append({"overrides": ["loss=hinge", "seed=0", "experiment=study"], "message": "other"})
    (tmp_path / "skipped.json").write_text(__import__("json").dumps({"skipped": skipped}))
    runs = load_runs([tmp_path])
    assert runs.common_overrides == ["experiment=study"]
    table = results.skipped_combinations(runs)
    assert table.to_dict("records") == [
        {"combination": "loss=ce", "jobs": 4, "seeds": "0, 1, 2, 10", "message": message},
        {"combination": "loss=hinge", "jobs": 1, "seeds": "0", "message": "other"}]


def test_no_skipped_json_gives_an_empty_table(three_seed_sweep):
    table = results.skipped_combinations(load_runs([three_seed_sweep[0]]))
    assert table.empty and list(table.columns) == ["combination", "jobs", "seeds", "message"]


@pytest.mark.parametrize(("headlines", "expected"), [
    ([["heatmap", "curves_test_accuracy"]] * 2, ["heatmap", "curves_test_accuracy"]),
    (["heatmap", "heatmap"], ["heatmap"]),             # a single name is a list of one
    ([["heatmap"], ["gradients"]], None),               # runs disagree: no headline
    ([None, None], None),
], ids=["list", "string", "disagree", "absent"])
def test_question_and_headline_come_from_the_runs_config(tmp_path, headlines, expected):
    for seed, headline in enumerate(headlines):
        config = {"loss": {"_target_": "x.A"}, "question": "Which loss?",
                  "report": {"target_fraction": 0.95, **({"headline": headline} if headline else {})}}
        sweeps.write_run(tmp_path / str(seed), ["loss=a", f"seed={seed}"], _accuracy_curve([0.5, 0.8]),
                         config=config)
    runs = load_runs([tmp_path])
    assert runs.question == "Which loss?"
    assert runs.headline == expected


def test_same_as_best_only_when_every_seed_matches(tmp_path):
    finals = {"ce": [0.90, 0.80], "kl": [0.90, 0.80], "swapped": [0.80, 0.90], "l2": [0.70, 0.75]}
    for loss, values in finals.items():
        for seed, final in enumerate(values):
            sweeps.write_run(tmp_path / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"],
                             _accuracy_curve([0.5, final]))
    table = results.shared_stats(load_runs([tmp_path])).set_index("loss")
    assert table["same_as_best"].to_dict() == {"ce": False, "kl": True, "swapped": False, "l2": False}
    assert table["verdict"].to_dict() == {"ce": "best", "kl": "tied", "swapped": "not distinguishable",
                                          "l2": "not distinguishable"}
    assert table.loc["swapped", "p_value"] == pytest.approx(1.0)  # same mean, not the same runs


def test_question_and_headline_of_the_latest_launch_win_over_reused_runs(tmp_path):
    # a resumed sweep reuses runs made under an older question (neither is part of the config hash)
    for seed in (0, 1):
        sweeps.write_run(tmp_path / str(seed), ["loss=a", f"seed={seed}"], _accuracy_curve([0.5, 0.8]),
                         config={"loss": {"_target_": "x.A"}, "question": "old?",
                                 "report": {"headline": ["heatmap"]}})
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: []\nquestion: new?\nreport:\n  headline: curves_test_accuracy\n")
    runs = load_runs([tmp_path])
    assert (runs.question, runs.headline) == ("new?", ["curves_test_accuracy"])


def test_tuned_view_notes_a_rate_chosen_at_the_edge_of_the_grid(tmp_path):
    val = {("a", 0.01): 0.9, ("a", 0.1): 0.8, ("a", 1.0): 0.7,    # a: best at the smallest rate
           ("b", 0.01): 0.7, ("b", 0.1): 0.9, ("b", 1.0): 0.8}    # b: inside the grid
    for (loss, lr), final in val.items():
        for seed in (0, 1):
            sweeps.write_run(tmp_path / f"{loss}{lr}{seed}", [f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"],
                             _accuracy_curve([0.5, final], [0.5, final]))
    notes = results.tuned_view(load_runs([tmp_path])).notes
    assert notes == ["loss=a: the chosen learning rate 0.01 is the smallest in the grid; "
                     "a smaller one might be better still."]


def test_tuned_view_never_picks_a_rate_where_a_seed_diverged_over_one_where_none_did(tmp_path):
    # lr 1.0: 4 of 5 seeds diverged, the survivor looks best (0.99); lr 0.1: every seed completed
    for seed in range(5):
        sweeps.write_run(tmp_path / f"small{seed}", ["optimizer.lr=0.1", f"seed={seed}"],
                         _accuracy_curve([0.5, 0.9], [0.5, 0.9]))
        if seed == 0:
            sweeps.write_run(tmp_path / f"big{seed}", ["optimizer.lr=1.0", f"seed={seed}"],
                             _accuracy_curve([0.5, 0.99], [0.5, 0.99]))
        else:
            sweeps.write_run(tmp_path / f"big{seed}", ["optimizer.lr=1.0", f"seed={seed}"],
                             _accuracy_curve([0.5, math.nan], [0.5, math.nan]), status="diverged",
                             message="train_loss is nan")
    tuned = results.tuned_view(load_runs([tmp_path]))
    assert tuned.best_lr["optimizer.lr"].tolist() == [0.1]
    assert tuned.best_lr["completed"].tolist() == ["5 of 5"]


def test_tuned_view_says_when_every_rate_lost_a_seed(tmp_path):
    for lr, finals in ((0.1, [0.8, None]), (1.0, [0.9, None])):
        for seed, final in enumerate(finals):
            status = "completed" if final is not None else "diverged"
            value = final if final is not None else math.nan
            sweeps.write_run(tmp_path / f"{lr}-{seed}", [f"optimizer.lr={lr}", f"seed={seed}"],
                             _accuracy_curve([0.5, value], [0.5, value]), status=status)
    tuned = results.tuned_view(load_runs([tmp_path]))
    assert tuned.best_lr["optimizer.lr"].tolist() == [1.0]
    assert any("at every learning rate some seed diverged or failed" in note for note in tuned.notes)
