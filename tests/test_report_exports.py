"""Typed, versioned results (issue 12): every non-default setting as a column, schema_version,
Parquet beside the CSVs with dtypes, readers that refuse an old folder with what to do, and the
main table as Markdown and LaTeX."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from lossbench import report
from lossbench.report import exports, settings, tables

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)


def _config(loss: str, seed: int, epochs: int = 30) -> dict:
    """A resolved config like run.py records, with lossbench's default settings except where noted."""
    return {"loss": {"_target_": "lossbench.losses.X", "label_smoothing": 0.0}, "seed": seed,
            "model": {"_target_": "lossbench.models.Softmax", "dtype": "float64"},
            "optimizer": {"_target_": "lossbench.optim.Adam", "lr": 0.01, "weight_decay": 0.0,
                          "batch_size": 64, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
            "schedule": {"_target_": "lossbench.schedules.Constant"},
            "dataset": {"_target_": "lossbench.data.Bundled", "name": "iris", "test_size": 0.2,
                        "val_size": 0.2, "label_noise": 0.0},
            "trainer": {"epochs": epochs, "grad_clip": 0.0, "divergence_factor": 1000.0},
            "progress": "none", "blas_threads": 1, "question": None}


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for loss in ("ce", "bce"):
        for seed in (0, 1):
            sweeps.write_run(root / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"],
                             sweeps.classification_curve(0.8 + 0.01 * seed), config=_config(loss, seed, epochs=5),
                             extra={"choices": {"loss": loss, "model": "softmax", "optimizer": "adam",
                                                "schedule": "constant", "dataset": "iris"}})
    report.build_report([root])
    return root


def test_package_defaults_are_lossbench_own_config():
    defaults = settings.package_defaults()
    assert defaults["optimizer"] == "adam" and defaults["optimizer.lr"] == 0.01
    assert defaults["trainer.epochs"] == 30 and defaults["dataset"] == "iris"
    assert "progress" not in defaults and not any(key.startswith("hydra") for key in defaults)


def test_results_have_every_non_default_setting_and_a_schema_version(sweep):
    results = pd.read_csv(sweep / "results.csv")
    assert results.columns[0] == "schema_version" and set(results["schema_version"]) == {2}
    # batch size 64 and 5 epochs differ from the defaults (32, 30), the loss is swept; the rest
    # (lr 0.01, the Softmax model, the iris split) are the defaults and get no column
    assert {"optimizer.batch_size", "trainer.epochs", "loss"} <= set(results.columns)
    assert results["optimizer.batch_size"].tolist() == [64] * 4 and results["trainer.epochs"].tolist() == [5] * 4
    assert not {"optimizer.lr", "model", "dataset.test_size", "progress", "blas_threads"} & set(results.columns)


def test_parquet_round_trip_keeps_dtypes(sweep):
    pytest.importorskip("pyarrow")
    written = pd.read_parquet(sweep / "results.parquet")
    typed = tables.read_results(sweep)
    assert list(written.columns) == list(typed.columns)
    assert str(typed["seed"].dtype) == "Int64" and str(typed["schema_version"].dtype) == "Int64"
    assert typed["message"].isna().all() and typed["message"].dtype == object  # not float64
    assert typed["final_test_accuracy"].dtype == float
    assert (sweep / "curves.parquet").is_file() and len(tables.read_curves(sweep)) == 4 * 6


def test_csv_reader_restores_the_same_types_without_parquet(sweep):
    (sweep / "results.parquet").unlink()
    typed = tables.read_results(sweep / "results.csv")
    assert str(typed["seed"].dtype) == "Int64"
    assert typed["message"].isna().all() and typed["message"].dtype == object
    assert typed["status"].tolist() == ["completed"] * 4


def test_an_old_results_folder_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    pd.DataFrame({"run_id": ["a/0"], "loss": ["ce"], "final_test_accuracy": [0.9]}).to_csv(old / "results.csv", index=False)
    with pytest.raises(tables.SchemaError, match=r"written by lossbench < 0.2 .*rebuild it with: lossbench-report .*old"):
        tables.read_results(old)
    newer = tmp_path / "newer"
    newer.mkdir()
    pd.DataFrame({"schema_version": [9], "run_id": ["a/0"]}).to_csv(newer / "results.csv", index=False)
    with pytest.raises(tables.SchemaError, match="schema version 9, this lossbench reads 2; upgrade lossbench"):
        tables.read_results(newer)
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        tables.read_results(tmp_path / "nowhere")


def test_main_table_as_markdown_and_latex(sweep):
    md = (sweep / "report" / "stats.md").read_text().splitlines()
    assert md[0].startswith("| loss | completed | mean ± std |") and md[1].startswith("|---|")
    assert len(md) == 4 and md[2].startswith("| bce |")  # folder order
    assert "| tie: identical at every seed | 0 (identical at every seed) |" in md[3]
    tex = (sweep / "report" / "stats.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "$\\pm$" in tex and "95\\% CI" in tex
    assert tex.count("\\\\") == 3  # header and two rows


def test_latex_and_markdown_escape_cells():
    table = pd.DataFrame({"a|b": ["x_1 & 50% $5#"], "c": ["p|q"]})
    assert exports.markdown_table(table).splitlines()[2] == "| x_1 & 50% $5# | p\\|q |"
    assert "x\\_1 \\& 50\\% \\$5\\#" in exports.latex_table(table)
