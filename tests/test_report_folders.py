"""Results folders are data: damaged run folders are listed and left out, planted configs never
run, CSV cells cannot become formulas, labels are plain text, every file is written atomically.

Each kind of damage is built by hand in tmp_path next to intact runs (tests/fixtures/sweeps.py).
"""

import importlib.util
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from lossbench import report
from lossbench.report import figures, layout, tables
from lossbench.report.tables import load_runs

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)


def _intact(sweep: Path) -> None:
    """loss a and b, seeds 0 and 1: four intact runs, with checksums."""
    for loss, quality in (("a", 0.9), ("b", 0.8)):
        for seed in (0, 1):
            sweeps.write_run(sweep / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"],
                             sweeps.classification_curve(quality + 0.01 * seed),
                             gradients=sweeps.gradient_table("bce"), calibration=sweeps.calibration_15(),
                             checksums=True)


def _damaged_run(sweep: Path, checksums: bool = False) -> Path:
    return sweeps.write_run(sweep / "bad", ["loss=c", "seed=0"], sweeps.classification_curve(0.7),
                            gradients=sweeps.gradient_table("bce"), checksums=checksums)


def _cut(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def _rewrite_summary(run: Path, change) -> None:
    summary = json.loads((run / "summary.json").read_text())
    change(summary)
    (run / "summary.json").write_text(json.dumps(summary))


def _append_row(path: Path, extra: int) -> None:
    n = len(path.read_text().splitlines()[0].split(","))
    path.write_text(path.read_text() + ",".join(["6"] * (n + extra)) + "\n")


def _drop_last_rows(path: Path, n: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-n]))


DAMAGE = {
    "summary cut in half": (lambda run: _cut(run / "summary.json"), "summary.json is not valid JSON"),
    "summary is a JSON list": (lambda run: (run / "summary.json").write_text("[1, 2, 3]"),
                               "summary.json holds a JSON list, not an object"),
    "summary is a JSON string": (lambda run: (run / "summary.json").write_text('"completed"'),
                                 "summary.json holds a JSON str, not an object"),
    "summary not UTF-8": (lambda run: (run / "summary.json").write_bytes(
        (run / "summary.json").read_bytes().replace(b'"completed"', b'"compl\xe9ted"')), "summary.json is not UTF-8"),
    "status unknown": (lambda run: _rewrite_summary(run, lambda s: s.update(status="finished")),
                       "status 'finished' is not one of"),
    "final is a list": (lambda run: _rewrite_summary(run, lambda s: s.update(final=[0.9])),
                        "summary.json 'final' is a list"),
    "binary metrics.csv": (lambda run: (run / "metrics.csv").write_bytes(b"\x00\x01\x02\xff" * 64),
                           "metrics.csv is binary"),
    "metrics.csv cut in half": (lambda run: _cut(run / "metrics.csv"), "metrics.csv is cut short"),
    "metrics.csv row with an extra column": (lambda run: _append_row(run / "metrics.csv", extra=1),
                                             "metrics.csv line 8 has 21 fields, its header 20"),
    "metrics.csv row with a field missing": (lambda run: _append_row(run / "metrics.csv", extra=-1),
                                             "metrics.csv line 8 has 19 fields, its header 20"),
    "metrics.csv rows missing": (lambda run: _drop_last_rows(run / "metrics.csv", 2),
                                 "metrics.csv has 4 rows ending at epoch 3; summary.json says the run stopped at epoch 5"),
    "metrics.csv text in a number column": (
        lambda run: (run / "metrics.csv").write_text((run / "metrics.csv").read_text().replace("0.5,", "=1+1,", 1)),
        "holds text, not numbers"),
    "gradients.csv binary": (lambda run: (run / "gradients.csv").write_bytes(b"k,target\x00\n1,0\n"),
                             "gradients.csv is binary"),
    "hydra config broken": (lambda run: (_rewrite_summary(run, lambda s: s.pop("config")),
                                         (run / ".hydra" / "config.yaml").write_text("loss: [unclosed\n")),
                            ".hydra/config.yaml is not valid YAML"),
}


@pytest.mark.parametrize("kind", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_run_is_listed_with_the_reason_and_left_out(tmp_path, kind, capsys):
    damage, reason = DAMAGE[kind]
    sweep = tmp_path / "sweep"
    _intact(sweep)
    run = _damaged_run(sweep)
    damage(run)
    runs = load_runs([sweep])
    assert [path.name for path, _ in runs.damaged] == ["bad"]
    assert reason in runs.damaged[0][1], runs.damaged[0][1]
    assert len(runs.damaged[0][1]) < 200  # one line
    assert sorted(runs.results["run_id"]) == ["sweep/a0", "sweep/a1", "sweep/b0", "sweep/b1"]
    # the rest of the report is built, no traceback (figures: drawn from damaged folders in
    # test_random_corruption_never_gives_a_traceback; the damaged run never reaches them)
    assert report.main([str(sweep), "--no-figures"]) == 0
    page = (sweep / "report" / "index.html").read_text()
    assert "Damaged run folders (left out)" in page and str(run) in page
    assert "c" not in set(pd.read_csv(sweep / "results.csv")["loss"])
    assert "Traceback" not in capsys.readouterr().err


def test_a_file_that_does_not_match_its_checksum_is_damage(tmp_path):
    sweep = tmp_path / "sweep"
    _intact(sweep)
    run = _damaged_run(sweep, checksums=True)
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text.replace("0.1,", "0.2,", 1))  # still valid CSV
    (_, reason), = load_runs([sweep]).damaged
    assert reason == "metrics.csv does not match its checksum in summary.json (changed or cut short)"


def test_a_checksum_listing_a_path_outside_the_run_folder_is_damage(tmp_path):
    sweep = tmp_path / "sweep"
    _intact(sweep)
    run = _damaged_run(sweep)
    _rewrite_summary(run, lambda s: s.update(files={"../../etc/passwd": "0" * 64}))
    (_, reason), = load_runs([sweep]).damaged
    assert "not a file of the run folder" in reason


def test_damaged_sweep_files_are_reported_and_the_report_is_built(tmp_path):
    sweep = tmp_path / "sweep"
    _intact(sweep)
    (sweep / "skipped.json").write_text('{"skipped": [')
    (sweep / "missing.json").write_text('["not", "an", "object"]')
    (sweep / "tuned.csv").write_bytes(b"loss,optimizer.lr\x00\n")
    (sweep / "multirun.yaml").write_text("hydra: [unclosed\n")
    (sweep / "sweep.json").write_text("{")
    runs = load_runs([sweep])
    assert len(runs.problems) == 4 and len(runs.results) == 4  # multirun.yaml: only ordering lost
    page = report.build_report([sweep]).read_text()
    assert "Sweep files that could not be read" in page and "tuned.csv is binary" in page


def test_every_run_damaged_is_one_clear_line(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    run = _damaged_run(sweep)
    (run / "summary.json").write_text("[]")
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(sweep)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no runs" in err and "bad: summary.json holds a JSON list" in err and "Traceback" not in err


# --- nothing in a run folder is ever run ------------------------------------------------------


def test_a_planted_target_is_never_instantiated(tmp_path, monkeypatch):
    import hydra.utils

    sentinel = tmp_path / "planted-sentinel.txt"
    sentinel.write_text("must survive")
    victim = tmp_path / "would-be-created.txt"

    def refuse(*args, **kwargs):
        raise AssertionError("the report instantiated something from a run folder")

    monkeypatch.setattr(hydra.utils, "instantiate", refuse)
    monkeypatch.setattr(hydra.utils, "call", refuse)
    monkeypatch.setattr(hydra.utils, "get_method", refuse)
    monkeypatch.setattr(hydra.utils, "get_class", refuse)
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        for loss, node in (("ok", {"_target_": "builtins.open", "file": str(sentinel), "mode": "w"}),
                           ("evil", {"_target_": "builtins.open", "file": str(victim), "mode": "w"})):
            sweeps.write_run(sweep / f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"],
                             sweeps.classification_curve(0.8), loss_node=node,
                             config={"loss": node, "model": {"_target_": "pandas.read_pickle",
                                                             "filepath_or_buffer": str(victim)}})
    report.build_report([sweep])
    assert sentinel.read_text() == "must survive" and not victim.exists()


def test_report_code_never_imports_hydra_utils_instantiates_or_unpickles():
    import ast

    package = Path(report.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.startswith(("hydra", "pickle", "dill", "cloudpickle", "joblib")) or n == "import_module"
                               for n in names), f"{path.name} imports {names}"
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                assert name not in ("instantiate", "call", "read_pickle", "__import__", "import_module",
                                    "eval", "exec"), f"{path.name} calls {name}"
                for keyword in node.keywords:
                    assert not (keyword.arg == "allow_pickle" and getattr(keyword.value, "value", False)), path.name


# --- CSV cells and labels ---------------------------------------------------------------------


def test_text_cells_cannot_start_a_formula_and_numbers_stay_numbers(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        for loss in ("=HYPERLINK(\"http://x\")", "@SUM(A1)", "+cmd", "-minus", "plain"):
            sweeps.write_run(sweep / f"{len(loss)}{loss[-2:].strip(')')}-{seed}", [f"loss={loss}", f"seed={seed}"],
                             sweeps.regression_curve(-0.5 + 0.1 * seed), task="regression",
                             status="completed", message="\tTAB" if loss == "plain" else None)
    report.build_report([sweep])
    raw = (sweep / "results.csv").read_text()
    rows = list(__import__("csv").reader(raw.splitlines()))
    for cell in (c for row in rows for c in row):
        assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
        if cell.startswith("-"):
            float(cell)  # a leading minus only on numbers
    table = pd.read_csv(sweep / "results.csv")
    assert set(table["loss"]) == {"'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "'+cmd", "'-minus", "plain"}
    assert table["final_test_r2"].dtype == float and (table["final_test_r2"] < 0).any()
    typed = tables.read_results(sweep)  # the reader undoes the guard
    assert set(typed["loss"]) == {"=HYPERLINK(\"http://x\")", "@SUM(A1)", "+cmd", "-minus", "plain"}
    for name in ("curves.csv", "report/stats.csv"):
        for cell in (c for row in __import__("csv").reader((sweep / name).read_text().splitlines()) for c in row):
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (name, cell)


@pytest.mark.parametrize("value", ["a$b", "$x$", "$\\frac{1}{0}$", "50$ and 20$"])
def test_dollar_signs_in_labels_are_plain_text(tmp_path, value):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        for loss in (value, "other"):
            sweeps.write_run(sweep / f"{'a' if loss == value else 'b'}{seed}", [f"loss={loss}", f"seed={seed}"],
                             sweeps.classification_curve(0.8 + 0.01 * seed), gradients=sweeps.gradient_table("bce"),
                             calibration=sweeps.calibration_15())
    report.build_report([sweep])  # mathtext would raise ValueError on most of these
    assert (sweep / "report" / "curves_test_accuracy.png").is_file()
    runs = load_runs([sweep])
    lay = layout._layout(runs, None)
    with matplotlib.rc_context(layout.RC):
        figure = figures._curves_figure(runs, lay, runs.curves, "test_accuracy")
        figure.canvas.draw()  # renders every text: fails on a mathtext parse error
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [f"loss={value}", "loss=other"]


# --- atomic writes ----------------------------------------------------------------------------


def test_a_failed_write_leaves_the_previous_files_whole(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    _intact(sweep)
    report.build_report([sweep])
    before = {name: (sweep / name).read_bytes() for name in ("results.csv", "curves.csv", "report/stats.csv",
                                                           "report/index.html")}
    sweeps.write_run(sweep / "c0", ["loss=c", "seed=0"], sweeps.classification_curve(0.7))  # a change

    def disk_full(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", disk_full)
    assert report.main([str(sweep)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and len(err.splitlines()) == 1
    for name, data in before.items():
        assert (sweep / name).read_bytes() == data, name
    leftovers = [p for p in sweep.rglob("*.tmp")]
    assert leftovers == []


def test_every_file_the_report_writes_is_renamed_into_place(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    _intact(sweep)
    renamed, real_replace = [], os.replace

    def recording_replace(src, dst):
        renamed.append(Path(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    report.build_report([sweep])
    produced = {p for p in sweep.rglob("*") if p.is_file() and p.parent in (sweep, sweep / "report")}
    assert {"results.csv", "curves.csv", "stats.csv", "index.html"} <= {p.name for p in produced}
    assert produced <= set(renamed)  # each one written to a temporary name first, then renamed


def test_random_corruption_never_gives_a_traceback(tmp_path):
    """Flip, cut and insert random bytes in summary.json and the CSV files of one run, 60 times."""
    rng = np.random.default_rng(11)
    sweep = tmp_path / "sweep"
    _intact(sweep)
    bad = _damaged_run(sweep, checksums=bool(rng.integers(2)))
    pristine = {p.name: p.read_bytes() for p in bad.iterdir() if p.is_file()}
    outcomes = {"damaged": 0, "intact": 0}
    for trial in range(60):
        for name, data in pristine.items():
            (bad / name).write_bytes(data)
        name = ["summary.json", "metrics.csv", "gradients.csv"][trial % 3]
        data = bytearray(pristine[name])
        position = int(rng.integers(len(data)))
        action = trial % 4
        if action == 0:
            data[position] = int(rng.integers(256))
        elif action == 1:
            data = data[:position]
        elif action == 2:
            data[position:position] = bytes(rng.integers(0, 256, 5).astype(np.uint8))
        else:
            data[position:position + 1] = b'"'
        (bad / name).write_bytes(bytes(data))
        runs = load_runs([sweep])  # must not raise
        assert len(runs.results) in (4, 5)
        outcomes["damaged" if runs.damaged else "intact"] += 1
    assert outcomes["damaged"] > 30  # most corruptions are caught; the rest read as valid data
    report.build_report([sweep])
