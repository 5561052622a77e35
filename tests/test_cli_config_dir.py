"""A broken YAML file in the user's --config-dir: one line naming the file and the place, exit 2."""

from lossbench.cli import check_config_dirs


def test_a_broken_yaml_file_is_named_with_its_line(tmp_path):
    folder = tmp_path / "my_conf" / "loss"
    folder.mkdir(parents=True)
    (folder / "fine.yaml").write_text("_target_: lossbench.losses.L2\n")
    (folder / "broken.yaml").write_text("_target_: lossbench.losses.L2\n  bad: [unclosed\n")
    for args in (["--config-dir", str(tmp_path / "my_conf"), "loss=broken"],
                 [f"--config-dir={tmp_path / 'my_conf'}"], ["-cd", str(tmp_path / "my_conf")]):
        line = check_config_dirs(args)
        assert line is not None and line.startswith("lossbench: error: cannot read ")
        assert "broken.yaml" in line and "(line 2, column 6)" in line and "\n" not in line


def test_readable_folders_and_no_folder_pass(tmp_path):
    (tmp_path / "loss").mkdir()
    (tmp_path / "loss" / "fine.yaml").write_text("_target_: lossbench.losses.L2\n")
    assert check_config_dirs(["--config-dir", str(tmp_path)]) is None
    assert check_config_dirs(["loss=ce"]) is None
