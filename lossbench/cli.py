"""The ``lossbench`` console script: ``--version`` here, everything else is :func:`lossbench.run.main`.

Hydra's own ``--version`` flag prints only Hydra's version; a user asking ``lossbench --version``
wants lossbench's, so this wrapper answers it (with Hydra's and Python's) before Hydra parses the
command line. The version check imports nothing heavy, so it answers in well under a second.
"""

from __future__ import annotations

import platform
import sys


def version_text() -> str:
    """``lossbench 0.2.0 (Hydra 1.3.8, Python 3.11.7)``: the line ``lossbench --version`` prints."""
    from importlib.metadata import PackageNotFoundError, version

    from lossbench import __version__

    try:
        hydra_version = version("hydra-core")
    except PackageNotFoundError:  # hydra imported from a source tree
        import hydra

        hydra_version = hydra.__version__
    return f"lossbench {__version__} (Hydra {hydra_version}, Python {platform.python_version()})"


def _config_dirs(args: list[str]) -> list[str]:
    """The folders given with ``--config-dir DIR`` / ``--config-dir=DIR`` / ``-cd DIR``."""
    dirs = []
    for index, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and index + 1 < len(args):
            dirs.append(args[index + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


def check_config_dirs(args: list[str]) -> str | None:
    """One line naming the first YAML file of a ``--config-dir`` that does not parse, else None.

    Hydra would answer a broken file with a 30-line traceback from the YAML parser.
    """
    from pathlib import Path

    import yaml

    for folder in _config_dirs(args):
        for path in sorted(Path(folder).rglob("*.yaml")) if Path(folder).is_dir() else []:
            try:
                yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
                mark = getattr(err, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                return f"lossbench: error: cannot read {path}: {problem}{where}"
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lossbench`` and ``python -m lossbench``; ``argv`` defaults to ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else argv
    if "--version" in args or "-V" in args[:1]:
        print(version_text())
        return
    problem = check_config_dirs(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        sys.exit(2)
    if argv is not None:  # Hydra reads sys.argv itself
        sys.argv = [sys.argv[0], *argv]
    from lossbench.run import main as hydra_main

    hydra_main()


if __name__ == "__main__":
    main()
