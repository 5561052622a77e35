"""Compatibility alias: the report's tables now live in ``lossbench.report.tables``.

Kept only so ``lossbench.callbacks`` (``read_skipped``) keeps working until it imports from the
new place; new code imports ``lossbench.report.tables`` directly.
"""

from lossbench.report.tables import NoRunsError, Runs, load_runs, read_skipped

__all__ = ["NoRunsError", "Runs", "load_runs", "read_skipped"]
