"""Processing-job runner: run one ``training_src`` script inside the SageMaker container.

The processing jobs (stacks/state_machine.py) get the same ``sourcedir.tar.gz`` that script-mode
training uses, as the ``code`` ProcessingInput. Their ``ContainerEntrypoint`` only unpacks it and
hands over to this module (CreateProcessingJob allows at most 256 characters per entrypoint item,
so the logic lives here, not in a shell one-liner)::

    /bin/sh -c 'mkdir -p /opt/ml/processing/code && for f in /opt/ml/processing/input/code/*; do
                tar -xzf "$f" -C /opt/ml/processing/code; done && cd /opt/ml/processing/code &&
                exec python3 -m training_src.processing "$@"' predmaint-runner SCRIPT

``python3 -m training_src.processing SCRIPT ARG...`` then: installs ``requirements.txt`` from the
unpacked code if there is one (the way the framework containers treat a source dir), puts the code on
``PYTHONPATH`` and replaces itself with ``python3 -m training_src.<script> ARG...`` run from the code
directory, so the script's exit code and signals are the job's. Only scripts that ship in the tarball run.

Standard library only (``training_src.threads`` is too): it runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training_src.threads import job_environment

CODE_DIR = Path(__file__).resolve().parent.parent  # the unpacked code: training_src/ and the entry module
#: the scripts a processing job may run (the state machine names one of them)
#: (paths under training_src/: ``stream/rebuild_job.py`` runs as ``python3 -m training_src.stream.rebuild_job``)
SCRIPTS = ("preprocess.py", "evaluate.py", "drift.py", "stream/rebuild_job.py", "stream/quality_job.py")


class RunnerError(SystemExit):
    """Bad runner usage: exits with code 2 and a one-line message."""

    def __init__(self, message: str) -> None:
        print(f"processing runner: {message}", file=sys.stderr)
        super().__init__(2)


def command(argv: list[str], code_dir: Path = CODE_DIR) -> list[str]:
    """``[script, *args]`` -> the command line that runs the script (checked: it must ship in ``code_dir``)."""
    if not argv:
        raise RunnerError(f"usage: processing.py SCRIPT [ARG...] (SCRIPT one of {list(SCRIPTS)})")
    script, *args = argv
    if script not in SCRIPTS or not (code_dir / "training_src" / script).is_file():
        shipped = [s for s in SCRIPTS if (code_dir / "training_src" / s).is_file()]
        raise RunnerError(f"unknown script {script!r}; this code ships {shipped}")
    module = script.removesuffix(".py").replace("/", ".")
    return [sys.executable, "-m", f"training_src.{module}", *args]


def environment(code_dir: Path = CODE_DIR, base: dict[str, str] | None = None) -> dict[str, str]:
    """The script's environment: ``base`` (default ``os.environ``) with the code dir first on PYTHONPATH and
    ``threads.JOB_ENVIRONMENT`` where ``base`` does not set it (libarrow's pool, read when pyarrow loads)."""
    env = job_environment(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code_dir), env.get("PYTHONPATH", "")) if p)
    return env


def install_requirements(code_dir: Path = CODE_DIR) -> None:
    """``pip install -r requirements.txt`` when the source dir ships one (none does by default)."""
    requirements = code_dir / "requirements.txt"
    if requirements.is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)


def main(argv: list[str] | None = None) -> None:
    cmd = command(list(sys.argv[1:] if argv is None else argv))
    install_requirements()
    os.chdir(CODE_DIR)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, environment())


if __name__ == "__main__":
    main()
