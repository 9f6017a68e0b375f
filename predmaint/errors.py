"""Exceptions shared by the CLI, the local runner and the local registry.

The CLI's exit codes (docs/contract.md, "Command line"): 0 success; 2 bad usage or input
(``UsageError``); 1 a failure while doing valid work (``PipelineError``, and anything unexpected);
130 interrupted (Ctrl-C, SIGTERM: ``Interrupted``). An error is one line on stderr, ``predmaint <command>: error:
<what and where>``, never a traceback, so keep messages short and say what to do.
"""

from __future__ import annotations

#: the CLI's exit codes: success, a failure while doing valid work, bad usage or input, interrupted
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
