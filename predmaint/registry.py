"""A local model registry with SageMaker Model Registry semantics.

Layout under ``<home>/registry``::

    registry.json            the ONLY source of truth: packages (by version) and the champion pointer
    packages/<version>/      model.tar.gz + package.json (a readable copy of the package record)
    cache/<version>-<sha>/   model.tar.gz extracted once, for serving
    .staging/                work area; anything here is garbage from an interrupted write
    .lock                    flock so two runs never allocate the same version

Why a single manifest: registering a package and moving the champion must be ONE atomic step. Every
write stages its files first, moves the package directory into place (invisible: the manifest does
not list it yet), and then commits by ``os.replace`` of ``registry.json``. A crash or exception at any
point before that replace leaves the registry exactly as it was; a package directory the manifest
does not list is an orphan and is removed by the next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training_src.candidates import CANDIDATES

from .data import file_sha256
from .errors import CorruptModelError, UnknownModelError, UsageError

SCHEMA = 1
APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"
#: Files an extracted model directory must contain to be servable.
REQUIRED_MODEL_FILES = ("feature_spec.json", "code/inference.py")
#: One of these holds the fitted model itself (each candidate algorithm's ``MODEL_FILE``).
MODEL_FILES = tuple(c.MODEL_FILE for c in CANDIDATES.values())
#: Refuse to extract archives that would inflate beyond this (a zip bomb guard).
MAX_EXTRACTED_BYTES = 2 * 1024**3

__all__ = ["APPROVED", "PENDING", "REJECTED", "CorruptModelError", "LocalRegistryClient", "ModelPackage",
           "Registry", "UnknownModelError", "flat_metrics"]


def flat_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """``{"regression_metrics": {"rmse": {"value": 12.3}}, "nasa_score": 300}`` -> ``{"rmse": 12.3, ...}``.

    Takes the evaluation report (SageMaker model-quality form) and returns every numeric metric it
    carries, flat; non-numeric entries are skipped.
    """
    out: dict[str, float] = {}
    for section in ("regression_metrics", "binary_classification_metrics"):
        for name, value in (evaluation.get(section) or {}).items():
            v = value.get("value") if isinstance(value, dict) else value
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[name] = float(v)
    for name in ("nasa_score", "improvement_pct"):
        v = evaluation.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[name] = float(v)
    return out


@dataclass(frozen=True)
class ModelPackage:
    """One registered model version (a SageMaker model package, locally)."""

    version: int
    status: str  # "Approved", "Rejected" or "PendingManualApproval" (SageMaker ModelApprovalStatus)
    reason: str
    metrics: dict[str, float]
    evaluation: dict[str, Any]
    lineage: dict[str, Any]
    run_id: str
    created_at: str  # ISO 8601, UTC
    artifact: Path  # <home>/registry/packages/<version>/model.tar.gz
    sha256: str = ""
    primary_metric: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    @property
    def primary_value(self) -> float | None:
        """The value of the primary metric (``rmse`` for RUL, ``pr_auc`` for classification)."""
        name = self.primary_metric or ("rmse" if "rmse" in self.metrics else "pr_auc")
        return self.metrics.get(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["artifact"] = str(self.artifact)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], artifact: Path) -> ModelPackage:
        return cls(
            version=int(d["version"]), status=d["status"], reason=d.get("reason", ""),
            metrics=dict(d.get("metrics") or {}), evaluation=dict(d.get("evaluation") or {}),
            lineage=dict(d.get("lineage") or {}), run_id=d["run_id"], created_at=d["created_at"],
            artifact=artifact, sha256=d.get("sha256", ""), primary_metric=d.get("primary_metric"),
            extra=dict(d.get("extra") or {}),
        )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json_durable(path: Path, doc: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())


class Registry:
    """The local model registry rooted at ``<home>/registry`` (created on first write)."""

    def __init__(self, home: Path | str):
        self.home = Path(home)
        self.root = self.home / "registry"
        self.manifest_path = self.root / "registry.json"
        self.packages_dir = self.root / "packages"
        self.cache_dir = self.root / "cache"
        self.staging_dir = self.root / ".staging"

    # ------------------------------------------------------------------ reading
    def _manifest(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"schema": SCHEMA, "packages": {}, "champion": None}
        except (OSError, ValueError) as exc:
            raise CorruptModelError(f"registry manifest {self.manifest_path} is unreadable: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.setdefault("packages", {}), dict):
            raise CorruptModelError(f"registry manifest {self.manifest_path} is not a registry (expected an "
                                    "object with a 'packages' object)")
        doc.setdefault("champion", None)
        return doc

    def _package(self, doc: dict[str, Any], version: int) -> ModelPackage:
        rec = doc["packages"][str(version)]
        return ModelPackage.from_dict(rec, self.packages_dir / str(version) / "model.tar.gz")

    def list_packages(self) -> list[ModelPackage]:
        """All registered packages, newest (highest version) first."""
        doc = self._manifest()
        return [self._package(doc, v) for v in sorted((int(k) for k in doc["packages"]), reverse=True)]

    def get(self, version: int | str) -> ModelPackage:
        """The package with this version; ``UnknownModelError`` if there is none."""
        try:
            v = int(version)
        except (TypeError, ValueError):
            raise UnknownModelError(f"model version must be a whole number, got {version!r}") from None
        doc = self._manifest()
        if str(v) not in doc["packages"]:
            known = sorted(int(k) for k in doc["packages"])
            hint = f"known versions: {', '.join(map(str, known))}" if known else "the registry is empty; run `predmaint run` first"
            raise UnknownModelError(f"model version {v} is not in the registry at {self.root} ({hint})")
        return self._package(doc, v)

    def champion(self) -> ModelPackage | None:
        """The current champion (the package the champion pointer names), or None."""
        doc = self._manifest()
        v = doc.get("champion")
        return None if v is None else self._package(doc, int(v))

    def find_run(self, run_id: str) -> ModelPackage | None:
        """The package registered by ``run_id``, if any."""
        doc = self._manifest()
        for k, rec in doc["packages"].items():
            if rec.get("run_id") == run_id:
                return self._package(doc, int(k))
        return None

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _cleanup(self, doc: dict[str, Any]) -> None:
        """Remove leftovers of interrupted writes: staging dirs and package dirs the manifest lacks."""
        if self.staging_dir.exists():
            shutil.rmtree(self.staging_dir, ignore_errors=True)
        if self.packages_dir.exists():
            for d in self.packages_dir.iterdir():
                if d.name not in doc["packages"]:
                    shutil.rmtree(d, ignore_errors=True)

    def register(self, *, artifact: Path, evaluation: dict[str, Any], lineage: dict[str, Any], approved: bool,
                 reason: str, run_id: str, primary_metric: str | None = None,
                 status: str | None = None) -> ModelPackage:
        """Register ``artifact`` (a model.tar.gz) as the next version; move the champion if approved.

        ``status`` overrides ``approved`` with any SageMaker approval status (``PendingManualApproval``:
        registered, not the champion; ``set_status`` decides later).

        ``evaluation`` is the evaluation report (its metrics are flattened into ``metrics``), ``lineage``
        what produced the model (dataset checksums, profile, hyperparameters, code commit). Idempotent
        per ``run_id``: a second call with the same run id returns the package already registered and
        changes nothing. Raises ``CorruptModelError`` (before writing anything) if the artifact is not a
        safe, complete model archive. Atomic: either the package (and champion move) is fully committed, or the
        registry is exactly as before.
        """
        artifact = Path(artifact)
        if not run_id:
            raise UsageError("register needs a run id")
        if not artifact.is_file():
            raise UsageError(f"model artifact {artifact} does not exist")
        inspect_model_archive(artifact)  # never register (let alone promote) an artifact that cannot be served
        with self._locked():
            doc = self._manifest()
            for k, rec in doc["packages"].items():
                if rec.get("run_id") == run_id:
                    return self._package(doc, int(k))
            self._cleanup(doc)
            version = max((int(k) for k in doc["packages"]), default=0) + 1
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=f"v{version}-", dir=self.staging_dir))
            try:  # a failed write (disk full, ...) leaves no half-copied artifact on the full disk
                shutil.copyfile(artifact, stage / "model.tar.gz")
                with open(stage / "model.tar.gz", "rb") as f:
                    os.fsync(f.fileno())
                rec = {
                    "version": version,
                    "status": status or (APPROVED if approved else REJECTED),
                    "reason": reason,
                    "metrics": flat_metrics(evaluation),
                    "evaluation": evaluation,
                    "lineage": lineage,
                    "run_id": run_id,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "sha256": file_sha256(stage / "model.tar.gz"),
                    "primary_metric": primary_metric,
                }
                _write_json_durable(stage / "package.json", rec)
                _fsync_dir(stage)
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                raise
            self.packages_dir.mkdir(parents=True, exist_ok=True)
            final = self.packages_dir / str(version)
            os.replace(stage, final)  # not visible yet: the manifest does not list it
            _fsync_dir(self.packages_dir)

            new_doc = {
                "schema": SCHEMA,
                "packages": {**doc["packages"], str(version): rec},
                "champion": version if rec["status"] == APPROVED else doc.get("champion"),
                "updated_at": rec["created_at"],
            }
            tmp = self.root / f".registry.json.{uuid.uuid4().hex}.tmp"
            try:
                _write_json_durable(tmp, new_doc)
                os.replace(tmp, self.manifest_path)  # the commit point
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                shutil.rmtree(final, ignore_errors=True)
                raise
            _fsync_dir(self.root)
            return self._package(new_doc, version)

    def set_status(self, version: int | str, status: str, reason: str) -> ModelPackage:
        """Change a package's approval status (SageMaker's UpdateModelPackage); ``Approved`` makes it the
        champion, and a champion that stops being approved hands the pointer back to the newest
        approved package. One atomic manifest replace, like ``register``."""
        if status not in (APPROVED, REJECTED, PENDING):
            raise UsageError(f"unknown approval status {status!r}")
        with self._locked():
            doc = self._manifest()
            key = str(int(version))
            if key not in doc["packages"]:
                raise UnknownModelError(f"model version {version} is not in the registry at {self.root}")
            rec = {**doc["packages"][key], "status": status, "reason": reason}
            packages = {**doc["packages"], key: rec}
            champion = doc.get("champion")
            if status == APPROVED:
                champion = int(key)
            elif champion is not None and int(champion) == int(key):
                approved = [int(k) for k, r in packages.items() if r["status"] == APPROVED]
                champion = max(approved, default=None)
            new_doc = {**doc, "packages": packages, "champion": champion,
                       "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with contextlib.suppress(OSError):
                _write_json_durable(self.packages_dir / key / "package.json", rec)
            tmp = self.root / f".registry.json.{uuid.uuid4().hex}.tmp"
            try:
                _write_json_durable(tmp, new_doc)
                os.replace(tmp, self.manifest_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fsync_dir(self.root)
            return self._package(new_doc, int(key))

    # ------------------------------------------------------------------ serving
    def resolve(self, version: int | str | None = None) -> ModelPackage:
        """``version`` if given, else the champion; ``UnknownModelError`` when neither exists."""
        if version is not None:
            return self.get(version)
        champ = self.champion()
        if champ is None:
            raise UnknownModelError(f"no champion model in the registry at {self.root}; run `predmaint run` "
                                    "first or pass --model VERSION")
        return champ

    def model_dir(self, version: int | str) -> Path:
        """The extracted model directory of ``version`` (extracted once into the cache, then reused).

        Raises ``UnknownModelError`` for an unknown version and ``CorruptModelError`` when the archive
        is missing, fails its checksum, is not a valid tar.gz, tries to escape its directory or lacks
        the files inference needs.
        """
        pkg = self.get(version)
        if not pkg.artifact.is_file():
            raise CorruptModelError(f"model version {pkg.version}: artifact {pkg.artifact} is missing")
        key = f"{pkg.version}-{(pkg.sha256 or 'nosha')[:12]}"
        target = self.cache_dir / key
        if target.is_dir() and _missing_files(target) == []:
            return target
        if pkg.sha256 and file_sha256(pkg.artifact) != pkg.sha256:
            raise CorruptModelError(f"model version {pkg.version}: artifact {pkg.artifact} does not match its "
                                    "recorded SHA-256 (modified or truncated)")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.cache_dir))
        try:
            extract_model_archive(pkg.artifact, tmp)
            if target.exists():  # a stale or broken cache entry, or another process won the race
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:
                if target.is_dir() and _missing_files(target) == []:
                    return target
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target


def _missing_files(model_dir: Path) -> list[str]:
    missing = [f for f in REQUIRED_MODEL_FILES if not (model_dir / f).is_file()]
    if not any((model_dir / f).is_file() for f in MODEL_FILES):
        missing.append(" or ".join(MODEL_FILES))
    return missing


def check_model_dir(model_dir: Path) -> None:
    """Raise ``CorruptModelError`` unless ``model_dir`` holds what inference needs."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CorruptModelError(f"model directory {model_dir} does not exist")
    missing = _missing_files(model_dir)
    if missing:
        raise CorruptModelError(f"model directory {model_dir} lacks {', '.join(missing)}")


def _vet_members(archive: Path, members: list[tarfile.TarInfo], root: Path) -> None:
    total = 0
    for m in members:
        name = m.name
        if name.startswith(("/", "\\")) or ".." in Path(name).parts:
            raise CorruptModelError(f"{archive}: unsafe path in archive: {name!r}")
        if not (m.isfile() or m.isdir()):
            raise CorruptModelError(f"{archive}: archive member {name!r} is not a regular file or directory")
        if not (root / name).resolve().is_relative_to(root):
            raise CorruptModelError(f"{archive}: archive member {name!r} escapes the model directory")
        total += max(m.size, 0)
        if total > MAX_EXTRACTED_BYTES:
            raise CorruptModelError(f"{archive}: archive expands beyond {MAX_EXTRACTED_BYTES} bytes")


def inspect_model_archive(archive: Path) -> list[str]:
    """Check a model.tar.gz without extracting it: readable to the end, safe member paths, and the files
    inference needs. Returns the member file names; raises ``CorruptModelError``."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads the whole stream: a truncated archive fails here
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise CorruptModelError(f"{archive}: not a valid model.tar.gz ({type(exc).__name__}: {exc})") from exc
    _vet_members(archive, members, Path("/__model__"))
    names = {str(Path(m.name)) for m in members if m.isfile()}
    missing = [f for f in REQUIRED_MODEL_FILES if f not in names]
    if not any(f in names for f in MODEL_FILES):
        missing.append(" or ".join(MODEL_FILES))
    if missing:
        raise CorruptModelError(f"{archive}: archive lacks {', '.join(missing)}")
    return sorted(names)


def extract_model_archive(archive: Path, dest: Path) -> None:
    """Safely extract a model.tar.gz into the existing directory ``dest``.

    Only regular files and directories with relative paths that stay inside ``dest`` are allowed (no
    absolute paths, ``..``, links or devices); the total size is bounded. Raises ``CorruptModelError``.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _vet_members(archive, members, dest.resolve())
            # members are already vetted; the "data" filter is a second line of defence.
            tar.extractall(dest, members=members, filter="data")
    except CorruptModelError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise CorruptModelError(f"{archive}: not a valid model.tar.gz ({type(exc).__name__}: {exc})") from exc
    missing = _missing_files(dest)
    if missing:
        raise CorruptModelError(f"{archive}: archive lacks {', '.join(missing)}")


def make_model_archive(model_dir: Path, archive: Path) -> Path:
    """Tar ``model_dir`` into ``archive`` with files at the archive root (as SageMaker expects)."""
    model_dir, archive = Path(model_dir), Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.{uuid.uuid4().hex}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(model_dir.rglob("*")):
            if "__pycache__" in p.parts or p.suffix == ".pyc":
                continue
            tar.add(p, arcname=p.relative_to(model_dir).as_posix(), recursive=False)
    os.replace(tmp, archive)
    return archive


class LocalRegistryClient:
    """The local registry behind the SageMaker Model Registry calls the promote Lambda makes
    (``list_model_packages``, ``describe_model_package``, ``create_model_package``,
    ``update_model_package``), so local mode promotes through the Lambda's own ``promote`` and
    ``confirm`` (lambda/promote/handler.py).

    A package's ARN is ``local:<version>``. ``create_model_package`` registers the run's artifact
    (``ModelDataUrl``, a local path) with the evaluation report and lineage given here, since the
    SageMaker request carries only references to them.
    """

    def __init__(self, registry: Registry, evaluation: dict[str, Any], lineage: dict[str, Any]) -> None:
        self.registry, self.evaluation, self.lineage = registry, evaluation, lineage

    @staticmethod
    def _arn(version: int) -> str:
        return f"local:{version}"

    @staticmethod
    def _version(arn: str) -> int:
        if not arn.startswith("local:"):
            raise UnknownModelError(f"not a local model package: {arn!r}")
        return int(arn.split(":", 1)[1])

    def _summary(self, pkg: ModelPackage) -> dict[str, Any]:
        return {"ModelPackageArn": self._arn(pkg.version), "ModelApprovalStatus": pkg.status,
                "ModelPackageDescription": f"run {pkg.run_id}: {pkg.reason}", "CreationTime": pkg.created_at}

    def list_model_packages(self, *, ModelPackageGroupName: str, SortBy: str = "CreationTime",
                            SortOrder: str = "Descending", MaxResults: int = 100,
                            ModelApprovalStatus: str | None = None, NextToken: str | None = None,
                            ) -> dict[str, Any]:
        packages = self.registry.list_packages()  # newest first
        if SortOrder == "Ascending":
            packages.reverse()
        rows = [self._summary(p) for p in packages if ModelApprovalStatus in (None, p.status)]
        return {"ModelPackageSummaryList": rows[:MaxResults]}

    def describe_model_package(self, *, ModelPackageName: str) -> dict[str, Any]:
        pkg = self.registry.get(self._version(ModelPackageName))
        meta = {"run_id": pkg.run_id, "test_fingerprint": str(pkg.evaluation.get("test_fingerprint") or ""),
                **{f"metric_{k}": repr(v) for k, v in sorted(pkg.metrics.items())}}
        return {**self._summary(pkg), "CustomerMetadataProperties": meta,
                "InferenceSpecification": {"Containers": [{"ModelDataUrl": str(pkg.artifact)}]}}

    def create_model_package(self, **request: Any) -> dict[str, Any]:
        description = request.get("ModelPackageDescription", "")
        run_id = (request.get("CustomerMetadataProperties") or {}).get("run_id") or \
            description.removeprefix("run ").split(":", 1)[0]
        reason = description.split(": ", 1)[-1]
        artifact = Path(request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"])
        pkg = self.registry.register(artifact=artifact, evaluation=self.evaluation, lineage=self.lineage,
                                     approved=False, status=request["ModelApprovalStatus"], reason=reason,
                                     run_id=run_id)
        return {"ModelPackageArn": self._arn(pkg.version)}

    def update_model_package(self, *, ModelPackageArn: str, ModelApprovalStatus: str,
                             ApprovalDescription: str = "") -> dict[str, Any]:
        self.registry.set_status(self._version(ModelPackageArn), ModelApprovalStatus, ApprovalDescription)
        return {"ModelPackageArn": ModelPackageArn}
