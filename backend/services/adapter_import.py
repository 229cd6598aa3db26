"""Import a trained run into the adapter registry: a run folder (`tunebridge adapters import`) or an
uploaded archive of one (`POST /v1/adapters`), through one path.

The run is checked before anything is written: it finished (its adapter weights and summary.json are
there), its base model is one this machine can load — for an upload, one the server serves — and
the name is new unless a new version is asked for. It then becomes a version like a service-trained
job's (`adapters.register`): the adapter with its label rules and calibration, the tokenizer saved
with the run and the label memory beside them, its metrics and the hash of the data it was trained on.

An archive (tar, tar.gz or zip) is unpacked into a temporary folder inside the data folder, member by
member: absolute paths, `..`, links and anything but plain files and folders are refused, and so is
an archive that unpacks to more than the limit. Only the run's own files are kept (adapter/,
tokenizer/, summary.json, config.json, the label memory, data.jsonl); the folder is removed whatever
happens, so a refused upload leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import lzma
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import Engine

from backend.errors import InvalidRequest, TooLarge
from backend.labels.conventions import MEMORY_FILE
from backend.services import adapters

WEIGHTS = "adapter_model.safetensors"
KEEP_FOLDERS = {"adapter", "tokenizer"}
KEEP_FILES = {"summary.json", "config.json", MEMORY_FILE, "data.jsonl"}
MAX_MEMBERS = 10_000
# What reading a damaged archive raises (RuntimeError: an encrypted zip member; NotImplementedError: a
# compression zipfile lacks).
UNREADABLE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
    RuntimeError,
    NotImplementedError,
)

BaseCheck = Callable[[dict[str, Any], Path], str]  # (summary, adapter folder) → the base model to record


def import_run(
    *,
    engine: Engine,
    data_dir: Path,
    run_dir: Path,
    name: str,
    base_check: BaseCheck,
    new_version: bool = False,
    where: str | None = None,
    local_data: bool = False,
    source: str | None = None,
) -> dict[str, Any]:
    """Register the finished run in `run_dir` as `name` (a new name; the next version with `new_version`).

    `base_check` decides the base model the version records (or raises); `where` names the run in
    messages; `local_data`: the data files named by the run's config.json are on this machine and may
    be read for the data hash (never for an upload); `source`: what the version's dataset column says it
    came from (default: the run folder's name)."""
    adapters.check_name(name)
    where = where or str(run_dir)
    summary = check_run(run_dir, where=where)
    base = base_check(summary, run_dir / "adapter")
    return adapters.register(
        engine=engine,
        data_dir=data_dir,
        name=name,
        job_id=f"import-{uuid.uuid4().hex[:25]}",
        dataset=f"run:{source or run_dir.resolve().name}"[:64],
        run_dir=run_dir,
        summary={**summary, "base_model": base},
        dataset_hash=data_hash(run_dir, summary, local=local_data),
        new_name=not new_version,
    )


def check_run(run_dir: Path, *, where: str) -> dict[str, Any]:
    """A finished run's summary, or an error that says what is missing and what to do."""
    if not run_dir.is_dir():
        raise InvalidRequest(f"{where}: no such run folder")
    summary_file, adapter = run_dir / "summary.json", run_dir / "adapter"
    summary = _read_json(summary_file, where=where) if summary_file.is_file() else None
    if not (adapter / "adapter_config.json").is_file() or not (adapter / WEIGHTS).is_file():
        unfinished = (run_dir / "config.json").is_file() and (summary is None or summary.get("status") == "cancelled")
        if unfinished:
            done = f" (stopped at step {summary.get('steps')} of {summary.get('total_steps')})" if summary else ""
            raise InvalidRequest(
                f"{where}: no adapter weights: the run did not finish{done}; finish it with "
                f"`tunebridge train --resume {where}`, then import it"
            )
        status = f" (its status: {summary.get('status')})" if summary else ""
        raise InvalidRequest(
            f"{where}: no adapter weights (adapter/adapter_config.json and adapter/{WEIGHTS}){status}: "
            "not a finished run folder"
        )
    if summary is None:
        raise InvalidRequest(f"{where}: no summary.json: not a finished run folder (the metrics are read from it)")
    if summary.get("status") != "succeeded":
        raise InvalidRequest(f"{where}: the run's status is {summary.get('status')!r}, not 'succeeded'")
    if not isinstance(summary.get("base_model"), str) or not summary["base_model"]:
        raise InvalidRequest(f"{where}: summary.json names no base_model")
    _read_json(adapter / "adapter_config.json", where=where)
    return {**summary, "data": summary.get("data") if isinstance(summary.get("data"), dict) else {}}


def _read_json(path: Path, *, where: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{where}: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: {path.name} is not a JSON object")
    return value


def data_hash(run_dir: Path, summary: dict[str, Any], *, local: bool) -> str:
    """The SHA-256 of the data the run trained on: as its summary recorded it, else of the run's data.jsonl
    (a service job's snapshot), else — `local` only — of the data files its config.json names; '' when
    none of these is known."""
    recorded = summary["data"].get("sha256")
    if isinstance(recorded, str) and len(recorded) == 64:
        return recorded
    if (run_dir / "data.jsonl").is_file():
        return adapters.file_hash(run_dir / "data.jsonl")
    if local and (run_dir / "config.json").is_file():
        from backend.training.data import data_sha256

        files = json.loads((run_dir / "config.json").read_text()).get("data") or []
        if files and all(Path(f).is_file() for f in files):
            return data_sha256(files)
    return ""


# -- base models ------------------------------------------------------------------------------------


def local_base(summary: dict[str, Any], adapter: Path) -> str:
    """The CLI's check: the run's base as it was given, if this machine finds it, else the folder it was
    loaded from; refused when neither is found, or when the one found is not the base it was trained on."""
    from backend.models.loading import ModelNotFoundError

    tried = []
    for ref in dict.fromkeys(r for r in (summary.get("base_model"), summary.get("base_model_path")) if r):
        try:
            return _found(ref, adapter)
        except ModelNotFoundError as exc:
            tried.append(str(exc))
    raise InvalidRequest(f"base model of this run not found: {'; '.join(tried)}")


def served_base(default: str, allowed_dirs: str, *, given: str | None = None) -> BaseCheck:
    """The API's check: the base must be one the server serves (a bundled model, its default base, or a
    folder under TUNEBRIDGE_ALLOWED_MODEL_DIRS) — an upload never names another server path. `given`
    (the request's base_model) replaces the run's; a run's base that is a folder of the same name as
    the default base's folder is taken to be that default (its weights' hash is checked)."""
    from backend.models.loading import ModelNotFoundError
    from backend.services.jobs import ServerModels

    models = ServerModels.of(default, allowed_dirs)

    def check(summary: dict[str, Any], adapter: Path) -> str:
        base = given or summary["base_model"]
        try:
            models.check(base, field="base_model")
        except InvalidRequest:
            if given or PurePosixPath(base).name != PurePosixPath(default).name:
                raise InvalidRequest(
                    f"base_model: the run's base {base!r} is not one this server serves; give base_model: a "
                    f"bundled model, {default!r} (the default) or a folder under TUNEBRIDGE_ALLOWED_MODEL_DIRS"
                ) from None
            base = default
        try:
            return _found(base, adapter)
        except ModelNotFoundError as exc:
            raise InvalidRequest(f"base_model: {exc}") from exc

    return check


def _found(ref: str, adapter: Path) -> str:
    """`ref` when that base model is here and, where the adapter recorded its base's weights hash and
    `ref` is a folder, the same weights; ModelNotFoundError when it is not here."""
    from backend.models.bundled import BUNDLED
    from backend.models.loading import ModelNotFoundError, resolve_model

    if ref in BUNDLED:  # converted on first use; the package that holds it must be installed
        if importlib.util.find_spec(BUNDLED[ref].package) is None:
            raise ModelNotFoundError(f"bundled model {ref!r} is not installed: {BUNDLED[ref].install_hint}")
        return ref
    folder = Path(resolve_model(ref))
    meta = adapter / "tunebridge.json"
    recorded = json.loads(meta.read_text()).get("base_model_sha256") if meta.is_file() else None
    if isinstance(recorded, str) and folder.is_dir():
        digest = hashlib.sha256()
        for weights in sorted(folder.glob("*.safetensors")):
            with open(weights, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        if digest.hexdigest() != recorded:
            raise InvalidRequest(
                f"base model {ref!r} is not the one this adapter was trained on: its weights' "
                "SHA-256 differs from the one recorded in adapter/tunebridge.json"
            )
    return ref


# -- archives ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file", "dir", "link" or "other"
    size: int
    open: Callable[[], IO[bytes]]


def import_archive(
    *,
    engine: Engine,
    data_dir: Path,
    archive: IO[bytes],
    filename: str,
    name: str,
    base_check: BaseCheck,
    limit_bytes: int,
    new_version: bool = False,
) -> dict[str, Any]:
    """Unpack an uploaded run folder (tar, tar.gz or zip) into a temporary folder, check it, register it."""
    adapters.check_name(name)
    with _scratch(data_dir) as scratch:
        run_dir = unpack(archive, scratch, limit_bytes=limit_bytes, filename=filename)
        return import_run(
            engine=engine,
            data_dir=data_dir,
            run_dir=run_dir,
            name=name,
            base_check=base_check,
            new_version=new_version,
            where=f"archive {filename!r}",
            source=re.sub(r"(\.tar\.gz|\.tgz|\.tar|\.zip)$", "", Path(filename).name) or "upload",
        )


@contextmanager
def _scratch(data_dir: Path) -> Iterator[Path]:
    folder = data_dir / "adapters" / ".uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unpack(archive: IO[bytes], dest: Path, *, limit_bytes: int, filename: str = "upload") -> Path:
    """The run folder unpacked from `archive` into `dest` (its root, or the one folder that holds it)."""
    head = archive.read(4)
    archive.seek(0)
    try:
        if head[:2] == b"PK":
            opened: Any = zipfile.ZipFile(archive)
            members = _zip_members(opened)
        else:
            try:
                opened = tarfile.open(fileobj=archive, mode="r:*")
            except tarfile.ReadError as exc:
                empty = " (it is empty)" if not head else ""
                raise InvalidRequest(f"archive {filename!r}: not a tar, tar.gz or zip archive{empty}") from exc
            members = _tar_members(opened)
        with opened:
            return _extract(members, dest, limit_bytes=limit_bytes, filename=filename)
    except UNREADABLE as exc:  # a damaged or truncated archive
        raise InvalidRequest(f"archive {filename!r}: damaged or truncated ({type(exc).__name__}: {exc})") from exc


def _extract(members: Iterator[_Member], dest: Path, *, limit_bytes: int, filename: str) -> Path:
    listed = _checked(members, limit_bytes=limit_bytes, filename=filename)
    prefix = _run_prefix([m.name for m in listed], filename=filename)
    for member in listed:
        relative = PurePosixPath(member.name[len(prefix) :]) if member.name.startswith(prefix) else None
        if relative is None or not relative.parts:
            continue
        if relative.parts[0] not in KEEP_FOLDERS and not (len(relative.parts) == 1 and relative.name in KEEP_FILES):
            continue  # checkpoints, plots, logs: not what a version keeps
        target = dest.joinpath(*relative.parts)
        try:
            if member.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with member.open() as source, open(target, "xb") as out:
                shutil.copyfileobj(source, out)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidRequest(f"archive {filename!r}: member {member.name!r} clashes with another one") from exc
    return dest


def _tar_members(tar: tarfile.TarFile) -> Iterator[_Member]:
    while (info := tar.next()) is not None:  # one header at a time: a bomb is stopped at the limit
        kind = "file" if info.isreg() else "dir" if info.isdir() else "link" if info.issym() or info.islnk() else ""
        yield _Member(info.name, kind or "other", info.size, partial(_extracted, tar, info))


def _extracted(tar: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file's (the only kind opened)
    return handle


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Member]:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        kind = "link" if stat.S_ISLNK(mode) else "dir" if info.is_dir() else "file"
        if stat.S_IFMT(mode) and not (stat.S_ISLNK(mode) or stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            kind = "other"
        yield _Member(info.filename, kind, info.file_size, partial(archive.open, info))


def _checked(members: Iterator[_Member], *, limit_bytes: int, filename: str) -> list[_Member]:
    """Every member, refused at the first unsafe one, or when they add up to more than the limit."""
    listed: list[_Member] = []
    total = 0
    for member in members:
        name = member.name
        path = PurePosixPath(name)
        if name.startswith("/") or ".." in path.parts:
            raise InvalidRequest(f"archive {filename!r}: member {member.name!r} points outside the run folder")
        if path.parts in ((), (".",)):  # the archive's own root (`tar -C run .` writes "./")
            if member.kind == "dir":
                continue
            raise InvalidRequest(f"archive {filename!r}: a member has no name")
        if "\\" in name:
            raise InvalidRequest(f"archive {filename!r}: member {member.name!r} has a backslash in its name")
        if member.kind == "link":
            raise InvalidRequest(f"archive {filename!r}: member {member.name!r} is a link; links are not accepted")
        if member.kind == "other":
            raise InvalidRequest(f"archive {filename!r}: member {member.name!r} is not a plain file or folder")
        total += member.size
        if total > limit_bytes:
            raise TooLarge(
                f"archive {filename!r} unpacks to more than {limit_bytes} bytes, the limit "
                "(TUNEBRIDGE_MAX_ADAPTER_MB); leave checkpoints/ out of it"
            )
        if len(listed) >= MAX_MEMBERS:
            raise InvalidRequest(f"archive {filename!r}: more than {MAX_MEMBERS} members")
        listed.append(_Member(str(path) + ("/" if member.kind == "dir" else ""), member.kind, member.size, member.open))
    return listed


def _run_prefix(names: list[str], *, filename: str) -> str:
    """'' when the run folder's files are at the archive's root, 'top/' when they are in one folder."""
    for marker in (("adapter", "adapter_config.json"), ("summary.json",), ("config.json",)):
        for name in names:
            parts = PurePosixPath(name).parts
            top = parts[: len(parts) - len(marker)]
            if parts[len(top) :] == marker and len(top) <= 1:
                return "".join(f"{part}/" for part in top)
    raise InvalidRequest(
        f"archive {filename!r} holds no run folder: expected adapter/adapter_config.json and summary.json at its "
        "root or in one folder (archive the run folder that `tunebridge train` wrote)"
    )
