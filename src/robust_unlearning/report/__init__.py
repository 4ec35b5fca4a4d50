"""``unlearn report``: one self-contained HTML page (and markdown) comparing unlearned models.

:func:`build_report` reads results files (``results.json`` of ``unlearn demo`` or the JSON that the
``unlearn attack …`` and ``unlearn diagnose`` commands write with ``--out``), gathers every method's
metrics, attacks and diagnostics, and writes ``report.html`` (figures inlined as base64 PNG),
``report.md`` and ``figures/*.png`` into the output directory.
"""

from .build import build_report

__all__ = ["build_report"]
