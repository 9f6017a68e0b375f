"""Local mode's one way to read the deployment configuration (``cdk.json``) and the repository files it runs.

``load()`` hands back the same typed, validated ``stacks.config.AppConfig`` that ``cdk synth`` builds
(unknown keys are errors, defaults are the dataclasses' own), so local mode uses the deployed
pipeline's promotion gates, data-capture share and drift thresholds, with no second reader to drift
apart from the first. ``stacks.config`` imports neither the CDK nor local mode (an import-linter
contract in pyproject.toml keeps it that way), so reading it here costs no CDK import.

Where the files are: in a checkout (``pip install -e .``, ``make setup``) the repository's own; in an
installed wheel, the copies it carries under ``<prefix>/share/predmaint/`` (``[tool.setuptools.data-files]``
in pyproject.toml): ``cdk.json`` and the prepare and promote Lambda handlers local mode runs.
``$PREDMAINT_CDK_JSON`` points ``load()`` at another cdk.json (a fleet whose RUL is in hours needs its
own promotion gates, set where its deployment sets them).
"""

from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from stacks.config import AppConfig

REPO = Path(__file__).resolve().parent.parent
CDK_JSON_ENV = "PREDMAINT_CDK_JSON"


def repo_file(relative: str) -> Path:
    """The repository file ``relative`` (e.g. ``cdk.json``, ``lambda/prepare/handler.py``): the checkout's
    when there is one, else the installed wheel's copy under ``<prefix>/share/predmaint/``."""
    here = REPO / relative
    if here.exists():
        return here
    installed = Path(sysconfig.get_path("data")) / "share" / "predmaint" / relative
    return installed if installed.exists() else here


def cdk_json_path() -> Path:
    """``$PREDMAINT_CDK_JSON`` if set, else the repository's (or the installed) cdk.json."""
    return Path(os.environ.get(CDK_JSON_ENV) or repo_file("cdk.json"))


def load(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """The validated ``AppConfig`` of ``path`` (default ``cdk_json_path()``): its ``context`` is read
    exactly as ``cdk synth`` reads it, without command-line ``-c`` overrides.

    Raises ``UsageError`` with one line naming the file and the offending key when the file cannot be
    read, is not JSON, or holds a setting ``stacks.config`` refuses."""
    from stacks.config import AppConfig, ConfigError

    where = Path(path) if path is not None else cdk_json_path()
    try:
        doc = json.loads(where.read_text())
    except OSError as exc:
        raise UsageError(f"{where}: cannot read the deployment config ({exc.strerror or exc}); "
                         f"set {CDK_JSON_ENV} to a cdk.json") from None
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON ({exc})") from None
    context = doc.get("context") if isinstance(doc, dict) else None
    if not isinstance(context, dict):
        raise UsageError(f"{where}: no \"context\" object (cdk.json's settings live under context.predmaint)")
    try:
        return AppConfig.from_context(context)
    except ConfigError as exc:
        raise UsageError(f"{where}: {exc}") from None
