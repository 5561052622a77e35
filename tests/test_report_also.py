"""``report.also_compare``: further final metrics get the answer's tests (e.g. label smoothing's ECE)."""

import importlib.util
from pathlib import Path

import pandas as pd

from lossbench.report import build_report

_spec = importlib.util.spec_from_file_location("sweeps", Path(__file__).parent / "fixtures" / "sweeps.py")
sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweeps)

SEEDS = range(8)


def _sweep(root: Path, also_compare) -> Path:
    """Two groups with the same accuracy; 'smooth' has a higher test ECE at every seed."""
    sweep = root / "sweep"
    for eps in ("0", "0.2"):
        for seed in SEEDS:
            ece = 0.03 + 0.001 * seed + (0.2 if eps == "0.2" else 0.0)
            curve = {"train_loss": [1.0, 0.5], "train_accuracy": [0.5, 0.9], "val_accuracy": [0.5, 0.9],
                     "test_accuracy": [0.5, 0.9 + 0.001 * seed], "test_ece": [0.3, ece]}
            config = {"loss": {"_target_": "synthetic.ce", "label_smoothing": float(eps)}, "seed": seed,
                      "report": {"headline": [], "also_compare": also_compare}}
            sweeps.write_run(sweep / f"{eps}-{seed}", [f"loss.label_smoothing={eps}", f"seed={seed}"], curve,
                             config=config)
    return sweep


def test_an_extra_metric_gets_its_own_table_with_the_same_tests(tmp_path):
    index = build_report([_sweep(tmp_path, ["test_ece"])])
    page = index.read_text()
    assert "Also compared: test ECE" in page
    stats = pd.read_csv(index.parent / "stats.csv")
    also = stats[stats["view"] == "also: test_ece"]
    assert len(also) == 2
    worse = also[also["verdict"] == "worse"]
    assert len(worse) == 1 and worse["difference"].iloc[0] > 0.19  # lower is better: +0.2 is worse
    assert worse["p_holm"].iloc[0] == 2 / 2 ** len(SEEDS)  # exact sign-flip test, 8 seeds, one pair
    assert (also["ci_low"] >= 0).all() and (also["ci_high"] <= 1).all()


def test_without_the_setting_the_page_has_no_extra_table(tmp_path):
    index = build_report([_sweep(tmp_path, [])])
    assert "Also compared" not in index.read_text()
    assert not (pd.read_csv(index.parent / "stats.csv")["view"].astype(str).str.startswith("also")).any()
