"""Progress bars (tqdm), silenced with ``ROBUST_UNLEARNING_QUIET=1`` or when stderr is no TTY and
``ROBUST_UNLEARNING_PROGRESS`` is unset."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    if os.environ.get("ROBUST_UNLEARNING_QUIET") == "1":
        return False
    if os.environ.get("ROBUST_UNLEARNING_PROGRESS") == "1":
        return True
    return sys.stderr.isatty()


def progress(total: int | None = None, desc: str = "", **kw):
    return tqdm(total=total, desc=desc, disable=not progress_enabled(), leave=False,
                dynamic_ncols=True, **kw)
