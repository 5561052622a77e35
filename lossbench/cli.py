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


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lossbench`` and ``python -m lossbench``; ``argv`` defaults to ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else argv
    if "--version" in args or "-V" in args[:1]:
        print(version_text())
        return
    if argv is not None:  # Hydra reads sys.argv itself
        sys.argv = [sys.argv[0], *argv]
    from lossbench.run import main as hydra_main

    hydra_main()


if __name__ == "__main__":
    main()
