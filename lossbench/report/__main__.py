"""``python -m lossbench.report``: the ``lossbench-report`` command."""

import sys

from lossbench.report import main

sys.exit(main())
