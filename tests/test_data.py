"""Data sources: every conf/dataset/*.yaml is split, standardised and corrupted as documented."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

import lossbench.conf
from lossbench.data import Dataset

CONF = Path(lossbench.conf.__file__).parent
DATASET_FILES = sorted((CONF / "dataset").glob("*.yaml"))
DATASET_IDS = [f.stem for f in DATASET_FILES]
SPLITS = ("train", "val", "test")


def write_csv(path: Path, target: str = "species", n: int = 90, seed: int = 0) -> Path:
    """A small CSV: features length, width, constant (7.5) and a target column.

    target 'species': string labels dog/cat/emu, 30 each; target 'weight': a float regression target.
    """
    rng = np.random.default_rng(seed)
    length, width = rng.normal(5.0, 2.0, n), rng.normal(-3.0, 0.5, n)
    columns = {"length": length, "width": width, "constant": np.full(n, 7.5)}
    if target == "species":
        columns[target] = np.array(["dog", "cat", "emu"])[np.arange(n) % 3]
    else:
        columns[target] = 3.0 * length - width + rng.normal(0.0, 1.0, n)
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def dataset_cases():
    """(conf file, CSV target or None, task) per case; csv.yaml runs on a class and a regression file.

    Classification yamls carry label_noise, regression yamls outliers (csv.yaml both);
    test_shapes_types_and_split_sizes checks that the task guessed here is the loaded one.
    """
    cases = []
    for path in DATASET_FILES:
        keys = OmegaConf.load(path)
        if path.stem == "csv":
            cases.append(pytest.param(path, "species", "classification", id="csv"))
            cases.append(pytest.param(path, "weight", "regression", id="csv-regression"))
        else:
            task = "classification" if "label_noise" in keys else "regression"
            cases.append(pytest.param(path, None, task, id=path.stem))
    return cases


CASES = dataset_cases()
CLASSIFICATION_CASES = [case for case in CASES if case.values[2] == "classification"]
REGRESSION_CASES = [case for case in CASES if case.values[2] == "regression"]


def make_cfg(path: Path, csv_target: str | None, tmp_path: Path):
    """The dataset config of one conf file; csv points at a fixture file written to tmp_path."""
    cfg = OmegaConf.load(path)
    if csv_target is not None:
        cfg.path = str(write_csv(tmp_path / "animals.csv", csv_target))
        cfg.target = csv_target
    return cfg


@pytest.fixture
def cfg(case, tmp_path):
    path, csv_target, _ = case
    return make_cfg(path, csv_target, tmp_path)


def parametrize_cases(cases):
    return pytest.mark.parametrize("case", [pytest.param(c.values, id=c.id) for c in cases])


def build(cfg):
    """instantiate(cfg), re-raising the source's own ValueError that Hydra wraps."""
    try:
        return instantiate(cfg)
    except InstantiationException as error:
        raise error.__cause__ from None


def load(cfg, seed=0, **overrides) -> Dataset:
    cfg = OmegaConf.merge(cfg, overrides)
    return build(cfg).load(np.random.default_rng(seed))


def splits(data: Dataset):
    """{split: (X, y)} for the splits present."""
    pairs = {s: (getattr(data, f"X_{s}"), getattr(data, f"y_{s}")) for s in SPLITS}
    return {s: xy for s, xy in pairs.items() if xy[0] is not None}


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


# -------------------------------------------------------------------------------------------------
# the conf files


@pytest.mark.parametrize("path", DATASET_FILES, ids=DATASET_IDS)
def test_yaml_documents_every_key(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# "), "first line: what the data set is"
    for line in lines[1:]:
        if line.strip() and not line.startswith("#") and not line.startswith("_target_"):
            assert re.match(r"^\w+: [^#]*\S\s+# \S", line), f"key without trailing comment: {line}"


@pytest.mark.parametrize("path", DATASET_FILES, ids=DATASET_IDS)
def test_yaml_defaults(path):
    cfg = OmegaConf.load(path)
    assert cfg.test_size == 0.2 and cfg.val_size == 0.2
    assert cfg.get("label_noise", 0.0) == 0.0 and cfg.get("outliers", 0.0) == 0.0
    assert "label_noise" in cfg or "outliers" in cfg


# -------------------------------------------------------------------------------------------------
# splits, types, standardisation, determinism


@parametrize_cases(CASES)
def test_shapes_types_and_split_sizes(cfg, case):
    data = load(cfg)
    assert data.task == case[2]
    parts = splits(data)
    assert set(parts) == set(SPLITS)
    n = sum(len(y) for _, y in parts.values())
    assert len(data.y_test) == round_half_up(0.2 * n)
    assert len(data.y_val) == round_half_up(0.2 * n)
    for X, y in parts.values():
        assert X.dtype == np.float64 and X.shape == (len(y), len(data.feature_names))
        if data.task == "classification":
            assert y.dtype == np.int64 and y.ndim == 1
            assert y.min() >= 0 and y.max() < data.n_targets == len(data.class_names)
        else:
            assert data.task == "regression" and data.class_names is None
            assert y.dtype == np.float64 and y.shape == (len(X), data.n_targets)


@parametrize_cases(CASES)
def test_zero_fractions_give_no_split(cfg):
    data = load(cfg, test_size=0.0, val_size=0.0)
    assert data.X_val is None and data.y_val is None
    assert data.X_test is None and data.y_test is None
    data = load(cfg, test_size=0.0, val_size=0.3)
    assert data.X_test is None and data.X_val is not None


@parametrize_cases(CLASSIFICATION_CASES)
def test_classification_splits_are_stratified(cfg):
    data = load(cfg)
    parts = splits(data)
    counts = {s: np.bincount(y, minlength=data.n_targets) for s, (_, y) in parts.items()}
    total = sum(counts.values())
    n = total.sum()
    for s, count in counts.items():
        assert np.all(count >= 1), f"{s} misses a class"
        expected = total * count.sum() / n
        assert np.max(np.abs(count - expected)) < 2, (s, count, expected)


@parametrize_cases(CASES)
def test_standardised_with_training_statistics_only(cfg):
    data = load(cfg)
    X_train = data.X_train
    std = X_train.std(axis=0)
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-10)
    constant = np.ptp(X_train, axis=0) == 0
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-10)
    # other splits are transformed with the same statistics, so they are not exactly centred
    for split in ("val", "test"):
        X = getattr(data, f"X_{split}")
        assert np.abs(X[:, ~constant].mean(axis=0)).max() > 1e-6
    if data.task == "regression":
        np.testing.assert_allclose(data.y_train.mean(axis=0), 0.0, atol=1e-10)
        np.testing.assert_allclose(data.y_train.std(axis=0), 1.0, rtol=1e-10)
        assert np.abs(data.y_test.mean(axis=0)).max() > 1e-6


def test_constant_feature_keeps_scale_one(tmp_path):
    data = load(make_cfg(CONF / "dataset" / "csv.yaml", "species", tmp_path))
    constant = data.feature_names.index("constant")
    for X, _ in splits(data).values():
        assert np.all(X[:, constant] == 0.0)


@parametrize_cases(CASES)
def test_same_seed_same_arrays_other_seed_other_split(cfg):
    first, again, other = load(cfg, seed=3), load(cfg, seed=3), load(cfg, seed=4)
    for split, (X, y) in splits(first).items():
        np.testing.assert_array_equal(X, getattr(again, f"X_{split}"))
        np.testing.assert_array_equal(y, getattr(again, f"y_{split}"))
    assert first.X_train.shape == other.X_train.shape
    assert not np.array_equal(first.X_train, other.X_train)


@pytest.mark.parametrize("name", ["moons", "circles", "blobs", "classification", "regression"])
def test_generated_set_fixed_by_random_state(name):
    cfg = OmegaConf.load(CONF / "dataset" / f"{name}.yaml")

    def all_rows(seed):  # the whole data set, independent of the split's order
        X = load(cfg, seed=seed, test_size=0.0, val_size=0.0).X_train
        return np.sort(X, axis=0)

    np.testing.assert_allclose(all_rows(1), all_rows(2), atol=1e-12)
    cfg.random_state = None
    assert not np.allclose(all_rows(1), all_rows(2))


# -------------------------------------------------------------------------------------------------
# corruption of the training split


@parametrize_cases(REGRESSION_CASES)
def test_label_noise_refused_for_regression(cfg):
    with pytest.raises(ValueError, match=r"label_noise=0.2: .* regression"):
        load(cfg, label_noise=0.2)


@parametrize_cases(CLASSIFICATION_CASES)
def test_outliers_refused_for_classification(cfg):
    with pytest.raises(ValueError, match=r"outliers=0.1: .* classification"):
        load(cfg, outliers=0.1)


@parametrize_cases(CLASSIFICATION_CASES)
def test_label_noise_flips_exact_count_of_training_labels(cfg):
    clean = load(cfg, seed=1)
    noisy = load(cfg, seed=1, label_noise=0.25)
    for split, (X, y) in splits(clean).items():
        np.testing.assert_array_equal(X, getattr(noisy, f"X_{split}"))
        if split != "train":
            np.testing.assert_array_equal(y, getattr(noisy, f"y_{split}"))
    changed = noisy.y_train != clean.y_train  # a flip to the same class would not count here
    assert changed.sum() == round_half_up(0.25 * len(clean.y_train))


def test_label_noise_picks_other_classes_uniformly():
    cfg = OmegaConf.load(CONF / "dataset" / "blobs.yaml")
    clean = load(cfg, n_samples=12000, centers=4, test_size=0.0, val_size=0.0)
    noisy = load(cfg, n_samples=12000, centers=4, test_size=0.0, val_size=0.0, label_noise=1.0)
    transitions = np.zeros((4, 4))
    np.add.at(transitions, (clean.y_train, noisy.y_train), 1)
    assert np.all(np.diag(transitions) == 0)
    off_diagonal = transitions[~np.eye(4, dtype=bool)]
    expected = 12000 / 12  # 3000 per class, split over 3 other classes
    assert np.all(np.abs(off_diagonal - expected) < 5 * np.sqrt(expected))


@parametrize_cases(REGRESSION_CASES)
def test_outliers_corrupt_training_targets_only(cfg):
    clean = load(cfg, seed=1)
    corrupted = load(cfg, seed=1, outliers=0.2, outlier_scale=10.0)
    for split, (X, y) in splits(clean).items():
        np.testing.assert_array_equal(X, getattr(corrupted, f"X_{split}"))
        if split != "train":
            np.testing.assert_array_equal(y, getattr(corrupted, f"y_{split}"))
    shift = corrupted.y_train - clean.y_train
    changed_rows = np.any(shift != 0, axis=1)
    assert changed_rows.sum() == round_half_up(0.2 * len(clean.y_train))
    # + 10 * N(0, 1) in standardised units: the shifts' RMS is near 10
    assert 5.0 < np.sqrt(np.mean(shift[changed_rows] ** 2)) < 20.0


# -------------------------------------------------------------------------------------------------
# key validation


BAD_KEYS = [
    ("iris", "test_size", 1.0),
    ("iris", "val_size", -0.1),
    ("iris", "label_noise", 1.5),
    ("iris", "name", "mnist"),
    ("diabetes", "outlier_scale", 0.0),
    ("diabetes", "outliers", "many"),
    ("moons", "noise", -1.0),
    ("moons", "n_samples", 1),
    ("moons", "random_state", -1),
    ("circles", "factor", 1.0),
    ("blobs", "centers", 1),
    ("blobs", "cluster_std", 0.0),
    ("classification", "n_classes", 1),
    ("classification", "class_sep", -1.0),
    ("classification", "flip_y", 2.0),
    ("regression", "n_targets", 0),
    ("regression", "n_informative", 11),
    ("csv", "task", "binary"),
]


@pytest.mark.parametrize(
    "name, key, value", BAD_KEYS, ids=[f"{n}-{k}={v}" for n, k, v in BAD_KEYS]
)
def test_bad_key_names_key_and_value(name, key, value, tmp_path):
    cfg = OmegaConf.load(CONF / "dataset" / f"{name}.yaml")
    if name == "csv":
        cfg = make_cfg(CONF / "dataset" / "csv.yaml", "species", tmp_path)
    cfg[key] = value
    with pytest.raises(ValueError, match=re.escape(f"{key}={value!r}")):
        build(cfg)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("iris", {"test_size": 0.6, "val_size": 0.4}, "test_size + val_size"),
        ("classification", {"n_informative": 2, "n_redundant": 0, "n_classes": 3}, "2**n_informative"),
        ("classification", {"n_features": 4, "n_redundant": 2}, "n_informative + n_redundant"),
    ],
    ids=["sizes-sum-to-1", "too-many-clusters", "too-few-features"],
)
def test_inconsistent_keys(name, overrides, message):
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "dataset" / f"{name}.yaml"), overrides)
    with pytest.raises(ValueError, match=re.escape(message)):
        build(cfg)


def test_split_too_small_for_stratification():
    cfg = OmegaConf.load(CONF / "dataset" / "iris.yaml")
    with pytest.raises(ValueError, match=r"test_size=0.01 gives 2 samples, fewer than the 3 classes"):
        load(cfg, test_size=0.01)


def test_class_too_rare_for_three_splits(tmp_path):
    path = tmp_path / "rare.csv"
    pd.DataFrame({"x": np.arange(40.0), "y": ["a"] * 20 + ["b"] * 18 + ["c"] * 2}).to_csv(path, index=False)
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "dataset" / "csv.yaml"), {"path": str(path), "target": "y"})
    with pytest.raises(ValueError, match="class 'c' has 2 sample"):
        load(cfg)
    data = load(cfg, val_size=0.0)  # two splits are possible
    assert np.count_nonzero(data.y_test == 2) == 1


def test_no_training_sample_left():
    cfg = OmegaConf.load(CONF / "dataset" / "regression.yaml")
    with pytest.raises(ValueError, match="none for training"):
        load(cfg, n_samples=2, test_size=0.4, val_size=0.4)


# -------------------------------------------------------------------------------------------------
# CSV files


def csv_cfg(path, target="species", **keys):
    cfg = OmegaConf.load(CONF / "dataset" / "csv.yaml")
    return OmegaConf.merge(cfg, {"path": str(path), "target": target, **keys})


def write_frame(path: Path, **columns) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def assert_csv_error(cfg, path, column, *fragments):
    with pytest.raises(ValueError) as error:
        load(cfg)
    message = str(error.value)
    assert str(path) in message and repr(column) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_csv_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    assert_csv_error(csv_cfg(path), path, "species", "not found")


def test_csv_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert_csv_error(csv_cfg(path), path, "species", "cannot read")


def test_csv_header_only(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("length,species\n")
    assert_csv_error(csv_cfg(path), path, "species", "no data rows")


def test_csv_absent_target_lists_columns(tmp_path):
    path = write_csv(tmp_path / "animals.csv")
    assert_csv_error(csv_cfg(path, target="kind"), path, "kind", "'length'", "'species'")


def test_csv_text_in_numeric_column(tmp_path):
    path = write_frame(
        tmp_path / "text.csv", length=["1.5", "2.0", "long", "3.0"], species=["a", "b", "a", "b"]
    )
    assert_csv_error(csv_cfg(path), path, "length", "'long'", "line 4")


def test_csv_missing_values(tmp_path):
    path = write_frame(
        tmp_path / "holes.csv", length=[1.0, np.nan, 3.0, np.nan], species=["a", "b", "a", "b"]
    )
    assert_csv_error(csv_cfg(path), path, "length", "2 missing")


def test_csv_infinite_value(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("length,species\n1.0,a\ninf,b\n3.0,a\n2.0,b\n")
    assert_csv_error(csv_cfg(path), path, "length", "not finite", "line 3")


def test_csv_values_too_large_to_standardise(tmp_path):
    path = write_frame(tmp_path / "huge.csv", length=[1e308, -1e308, 1e308, -1e308], species=["a", "b", "a", "b"])
    assert_csv_error(csv_cfg(path), path, "length", "too large")


def test_csv_infinite_regression_target(tmp_path):
    path = tmp_path / "target.csv"
    path.write_text("x,y\n1.0,2.0\n2.0,-inf\n3.0,1.0\n4.0,0.5\n")
    assert_csv_error(csv_cfg(path, target="y", task="regression"), path, "y", "not finite", "line 3")


def test_csv_single_class(tmp_path):
    path = write_frame(tmp_path / "one.csv", length=[1.0, 2.0, 3.0], species=["a", "a", "a"])
    assert_csv_error(csv_cfg(path), path, "species", "single class")


def test_csv_text_target_for_regression(tmp_path):
    path = write_csv(tmp_path / "animals.csv")
    assert_csv_error(csv_cfg(path, task="regression"), path, "species", "numeric target", "'dog'")


def test_csv_string_labels_encoded_in_sorted_order(tmp_path):
    data = load(csv_cfg(write_csv(tmp_path / "animals.csv"), test_size=0.0, val_size=0.0))
    assert data.task == "classification" and data.class_names == ["cat", "dog", "emu"]
    assert data.name == "animals" and data.feature_names == ["length", "width", "constant"]
    assert np.array_equal(np.bincount(data.y_train), [30, 30, 30])


def test_csv_relative_path_from_working_directory(tmp_path, monkeypatch):
    write_csv(tmp_path / "animals.csv")
    monkeypatch.chdir(tmp_path)
    assert load(csv_cfg("animals.csv")).n_targets == 3


TASK_CASES = {
    "text": (["x", "y", "z"] * 20, "classification", ["x", "y", "z"]),
    "bool": ([True, False] * 30, "classification", ["False", "True"]),
    "few-integers": ([3, 1, 2] * 20, "classification", ["1", "2", "3"]),
    "integer-floats": ([0.0, 1.0] * 30, "classification", ["0", "1"]),
    "many-integers": (list(range(21)) * 3, "regression", None),
    "fractions": ([0.5, 1.0, 1.5] * 20, "regression", None),
}


@pytest.mark.parametrize("target, task, class_names", TASK_CASES.values(), ids=TASK_CASES)
def test_csv_auto_task(target, task, class_names, tmp_path):
    path = write_frame(tmp_path / "auto.csv", x=np.arange(len(target), dtype=float), t=target)
    data = load(csv_cfg(path, target="t", test_size=0.0, val_size=0.0))
    assert data.task == task and data.class_names == class_names
    if task == "regression":
        assert data.y_train.shape == (len(target), 1)


def test_csv_task_override(tmp_path):
    path = write_frame(tmp_path / "counts.csv", x=np.arange(60.0), t=[0, 1, 2] * 20)
    data = load(csv_cfg(path, target="t", task="regression"))
    assert data.task == "regression" and data.n_targets == 1


def test_every_conf_target_names_its_class_through_lossbench_data():
    """The conf files name every source lossbench.data.<Class> (config hashes include the string);
    the classes live in their own modules and are the same objects there."""
    import importlib

    import lossbench.data as data

    for path in sorted((Path(lossbench.conf.__file__).parent / "dataset").glob("*.yaml")):
        target = OmegaConf.load(path)["_target_"]
        module, name = target.rsplit(".", 1)
        assert module == "lossbench.data", (path.name, target)
        cls = getattr(data, name)
        assert issubclass(cls, data.DataSource) and getattr(importlib.import_module(cls.__module__), name) is cls
    with pytest.raises(AttributeError):
        data.NoSuchSource
