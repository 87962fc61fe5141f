"""One exception type for every user-facing failure.

The CLI prints ``str(error)`` as a single line and exits 2; library users catch
:class:`HLGFAError`. Messages name the offending file and say how to fix it.
"""

from __future__ import annotations


class HLGFAError(Exception):
    """A problem with the user's input, data or run folder (not a bug)."""


class DataError(HLGFAError):
    """Missing folders, unreadable images, masks that do not match."""


class ConfigError(HLGFAError):
    """Unknown or ill-typed configuration keys, or a checkpoint from another config."""


class TrainingError(HLGFAError):
    """Training cannot go on (diverged loss, too few images)."""


class NotFittedError(HLGFAError):
    """A model asked to score before its normal model was fitted (calibration)."""
