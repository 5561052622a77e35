"""Folder names: sweep jobs named by their overrides, studies and their variants kept apart."""

from __future__ import annotations

from lossbench.run import _job_dirname, _study_dir


def test_job_folders_are_readable_safe_and_bounded():
    assert _job_dirname("loss=ce,seed=1") == "loss=ce,seed=1"
    assert _job_dirname("") == "default"
    assert "/" not in _job_dirname("dataset.path=/data/x.csv,seed=0")
    long = _job_dirname(",".join(f"key{i}=value{i}" for i in range(40)))
    assert len(long) <= 120
    assert long != _job_dirname(",".join(f"key{i}=value{i}" for i in range(41))), "a hash keeps them apart"


def test_a_study_keeps_its_folder_unless_an_override_changes_its_numbers():
    assert _study_dir("l2_vs_ce", ["experiment=l2_vs_ce"]) == "runs/l2_vs_ce"
    shown_only = ["experiment=l2_vs_ce", "progress=none", "hydra/launcher=basic", "hydra.launcher.n_jobs=2",
                  "sweep.skip_invalid=true", "blas_threads=2"]
    assert _study_dir("l2_vs_ce", shown_only) == "runs/l2_vs_ce", "same numbers, same folder: resume"
    assert _study_dir("l2_vs_ce", ["experiment=l2_vs_ce", "trainer.epochs=80", "seed=0,1"]) \
        == "runs/l2_vs_ce,seed=0,1,trainer.epochs=80"
