"""``python -m lossbench``: the same as the ``lossbench`` command."""

from lossbench.cli import main

if __name__ == "__main__":
    main()
