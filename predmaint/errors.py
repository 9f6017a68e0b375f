"""Exceptions shared by the CLI, the local runner and the local registry.

The CLI maps them to exit codes (docs/contract.md): ``UsageError`` -> 2 (bad usage or input),
``PipelineError`` -> 1 (a failure while doing valid work), ``Interrupted`` -> 130 (Ctrl-C or SIGTERM). Messages are shown to the user
as one line, so keep them short and say what to do.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage or input: unknown profile/subset, missing data, bad option value. Exit code 2."""


class PipelineError(Exception):
    """A stage failed while processing valid input (training crashed, disk full, ...). Exit code 1."""


class UnknownModelError(UsageError):
    """A model version that is not in the local registry (or no champion yet)."""


class CorruptModelError(UsageError):
    """A model artifact that cannot be extracted or lacks required files."""


class Interrupted(Exception):
    """Stopped by Ctrl-C or SIGTERM, after cleaning up (nothing registered, no folder left). Exit code 130."""
