"""User-facing errors.

Every bad input ends in an :class:`UnlearnError`: the CLI prints its message on one line and exits
with code 2. Anything else escaping is a bug in this package.
"""

from __future__ import annotations


class UnlearnError(Exception):
    """A problem with the user's input (file, config, model, data) or a run that cannot go on."""

    exit_code = 2


class NonFiniteLossError(UnlearnError):
    """A loss or gradient became NaN/inf during unlearning."""

    def __init__(self, what: str, step: int):
        super().__init__(f"non-finite {what} at step {step}; stopping (last good weights kept)")
        self.step = step
