"""lossbench.report.drawing: a helper process draws some of a report's figures, with the same bytes.

The helper loads the runs itself and draws only when it read the same runs and would draw the same
figures; whatever it does not draw (a mismatch, a dead helper) this process draws.
"""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from lossbench.report import drawing, gallery, page
from lossbench.report.tables import load_runs

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)


def _write_sweep(sweep: Path, losses=("l2", "bce", "ce")) -> Path:
    for loss, quality in zip(losses, (0.85, 0.92, 0.9)):
        for lr in (0.1, 1.0):
            for seed in (0, 1):
                curve = sweeps.classification_curve(quality - 0.05 * (lr == 1.0) + 0.01 * seed)
                n = len(curve["train_loss"])
                curve.update(train_dz_norm_correct=list(np.linspace(0.5, 0.1, n)),
                             train_dz_norm_wrong=list(np.linspace(0.9, 0.4, n)),
                             train_wrong_vanishing_frac=list(np.linspace(0.0, 0.3, n)))
                sweeps.write_run(sweep / f"loss={loss},lr={lr},seed={seed}",
                                 [f"loss={loss}", f"optimizer.lr={lr}", f"seed={seed}"], curve,
                                 status="completed", calibration=sweeps.calibration_15(),
                                 gradients=sweeps.gradient_table(loss, k=3))
    return sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return _write_sweep(tmp_path_factory.mktemp("drawing") / "sweep")


@pytest.fixture(scope="module")
def alone(sweep):
    """Every figure of the sweep, drawn by this process alone."""
    return drawing.render_all(_specs(sweep)[0])


def _specs(sweep: Path):
    runs = load_runs([sweep])
    tuned, layout = page.views(runs)
    specs = gallery.figure_specs(runs, tuned, layout)
    return specs, drawing.hello(runs, specs)


def test_a_helper_draws_some_figures_with_the_bytes_drawn_here(sweep, alone):
    specs, expected = _specs(sweep)
    assert len(specs) >= 6
    helper = drawing.Helper([sweep], 0.95)
    helper.expected = expected
    assert helper.ready() == expected  # the child read the same runs and would draw the same figures
    shared = drawing.render_all(specs, helper)
    assert helper.failed is None and 1 <= helper.drawn < len(specs)
    assert shared == alone and all(result is not None for result in alone)
    assert helper.process.poll() is not None  # ended with the report


def test_a_helper_started_before_the_runs_exist_draws_with_the_same_bytes(sweep, alone, tmp_path):
    """A sweep starts its helper (niced) while the runs train and names the runs when the report
    begins: it then draws as one started by the report, and build_report uses and ends it."""
    specs, expected = _specs(sweep)
    helper = drawing.Helper(nice=10)
    assert helper.alive() and not helper.started
    helper.start([sweep], 0.95)
    helper.expected = expected
    assert helper.ready() == expected
    assert drawing.render_all(specs, helper) == alone
    assert helper.failed is None and helper.drawn >= 1
    given = drawing.Helper(nice=10)
    index = page.build_report([sweep], out_dir=tmp_path / "early", helper=given)
    assert given.started and given.process.poll() is not None  # used, then ended by the report
    for name, (_, png, svg) in zip([spec.name for spec in specs], alone):
        assert (index.parent / f"{name}.png").read_bytes() == png and (index.parent / f"{name}.svg").read_bytes() == svg


def test_a_helper_that_read_other_runs_draws_nothing(sweep, alone, tmp_path):
    specs, expected = _specs(sweep)
    other = _write_sweep(tmp_path / "other", losses=("l2", "bce", "hinge"))
    helper = drawing.Helper([other], 0.95)
    helper.expected = expected
    assert drawing.render_all(specs, helper) == alone
    assert helper.drawn == 0 and "other runs" in helper.failed


def test_a_helper_that_dies_leaves_its_figures_to_this_process(sweep, alone):
    specs, expected = _specs(sweep)
    helper = drawing.Helper([sweep], 0.95)
    helper.expected = expected
    helper.process.kill()
    assert drawing.render_all(specs, helper) == alone
    assert helper.drawn == 0 and helper.failed


def test_the_report_drawn_with_a_helper_is_the_report_drawn_alone(sweep, tmp_path, monkeypatch):
    pages = {}
    for name, minimum in (("alone", 10**9), ("helper", 1)):
        monkeypatch.setattr(drawing, "HELPER_MIN_RUNS", minimum)
        monkeypatch.setattr(drawing, "usable_cores", lambda: 2)
        started = []
        monkeypatch.setattr(page, "Helper", lambda *args: started.append(drawing.Helper(*args)) or started[-1])
        index = page.build_report([sweep], out_dir=tmp_path / name)
        assert len(started) == (name == "helper")
        pages[name] = re.sub(r"Generated [0-9: -]+ UTC", "", index.read_text())
    assert pages["helper"] == pages["alone"]
    files = sorted(p.name for p in (tmp_path / "alone" / "report").iterdir())
    assert any(name.endswith(".svg") for name in files)
    for name in files:
        if name == "index.html":  # compared above, without its "Generated" time
            continue
        helper, alone = (tmp_path / way / "report" / name for way in ("helper", "alone"))
        assert helper.read_bytes() == alone.read_bytes(), name


def test_a_helper_that_stops_answering_costs_a_wait_not_the_report(sweep, alone):
    import subprocess

    specs, expected = _specs(sweep)
    helper = drawing.Helper([sweep], 0.95)
    helper.close()
    helper.process = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    helper._reader = drawing._Reader(helper.process.stdout)
    helper.expected = helper.hello = expected  # as if it had said hello, then hung
    helper.patience = 0.5
    assert drawing.render_all(specs, helper) == alone
    assert helper.drawn == 0 and "in time" in helper.failed and helper.process.poll() is not None
