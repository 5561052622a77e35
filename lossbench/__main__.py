"""``python -m lossbench``: the same as the ``lossbench`` command."""

from lossbench.run import main

if __name__ == "__main__":
    main()
