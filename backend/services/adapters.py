"""The adapter registry: every successful train job becomes an immutable, versioned adapter.

A version is a copy of the job's adapter (and tokenizer) in `data_dir/adapters/<name>/v<N>/`, with
its base model, the hash of the data it was trained on and its metrics. Aliases (`name@prod`) point
at versions and keep a history, so a promotion can be rolled back. References accepted everywhere:
`name` (the newest version), `name@3` (a version), `name@prod` (an alias).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from backend.errors import Conflict, InvalidRequest, NotFound
from backend.labels.conventions import MEMORY_FILE
from backend.models.adapters import AdapterNotFoundError
from backend.storage import now_iso

MAX_VERSION = 2**62  # versions are counted from 1; larger numbers are no version (and overflow SQL integers)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
COLUMNS = (
    "name, version, base_model, dataset, dataset_hash, job_id, path, schema_fields, metrics, created_at, promotion"
)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidRequest(
            f"adapter name {name!r} is invalid: use 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias) or alias == "latest":
        raise InvalidRequest(
            f"alias {alias!r} is invalid: use 1-32 lower-case letters, digits, '-' or '_', starting "
            "with a letter ('latest' is reserved; versions are numbers)"
        )
    return alias


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register(
    *,
    engine: Engine,
    data_dir: Path,
    name: str,
    job_id: str,
    dataset: str,
    run_dir: Path,
    summary: dict[str, Any],
    dataset_hash: str | None = None,
    new_name: bool = False,
) -> dict[str, Any]:
    """Copy a finished run's adapter into the registry as the next version of `name`.

    Idempotent per job: a worker that crashed after registering gets the same version back.
    `dataset_hash`: the SHA-256 of the data trained on (default: of the run's data.jsonl).
    `new_name`: refuse (Conflict) when `name` already has a version, rather than adding one.
    """
    check_name(name)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name, version FROM adapters WHERE job_id = :j"), {"j": job_id}).first()
    if row is not None:
        return get_version(engine=engine, name=row[0], version=row[1])
    staging = data_dir / "adapters" / name / f".staging-{job_id}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        return _register(
            engine, data_dir, name, job_id, dataset, run_dir, summary, dataset_hash, new_name, staging=staging
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing of a registration that failed is kept
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # the name's folder, when this was its first version
        raise


def _register(
    engine: Engine,
    data_dir: Path,
    name: str,
    job_id: str,
    dataset: str,
    run_dir: Path,
    summary: dict[str, Any],
    dataset_hash: str | None,
    new_name: bool,
    *,
    staging: Path,
) -> dict[str, Any]:
    shutil.copytree(run_dir / "adapter", staging / "adapter")
    if (run_dir / "tokenizer").is_dir():
        shutil.copytree(run_dir / "tokenizer", staging / "tokenizer")
    if (run_dir / MEMORY_FILE).is_file():  # the label memory stays beside the adapter folder, not in it
        shutil.copy2(run_dir / MEMORY_FILE, staging / MEMORY_FILE)
    metrics = {
        k: summary.get(k)
        for k in ("final_loss", "val_loss", "validation", "best", "steps", "tokens_per_s", "train_time_s", "runtime")
    }
    data = summary.get("data") or {}
    metrics["train_examples"], metrics["val_examples"] = data.get("train_examples"), data.get("val_examples")
    values = {
        "name": name,
        "base_model": summary["base_model"],
        "dataset": dataset,
        "job_id": job_id,
        "dataset_hash": dataset_hash if dataset_hash is not None else file_hash(run_dir / "data.jsonl"),
        "schema": json.dumps(data.get("schema")),
        "metrics": json.dumps(metrics),
        "t": now_iso(),
    }
    for _ in range(5):  # two jobs of the same name finishing together: the loser takes the next number
        with engine.connect() as conn:
            version = (
                int(
                    conn.execute(
                        text("SELECT COALESCE(MAX(version), 0) FROM adapters WHERE name = :name"), values
                    ).scalar_one()
                )
                + 1
            )
        if new_name and version > 1:
            raise Conflict(
                f"adapter {name!r} already exists (versions 1 to {version - 1}): choose another name, or add "
                f"it as {name}@{version} (the CLI's --new-version; the API's new_version=true)"
            )
        final = data_dir / "adapters" / name / f"v{version}"
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"INSERT INTO adapters ({COLUMNS}) VALUES (:name, :v, :base_model, :dataset, "
                        ":dataset_hash, :job_id, :path, :schema, :metrics, :t, NULL)"
                    ),
                    {**values, "v": version, "path": str(final)},
                )
                shutil.rmtree(final, ignore_errors=True)
                staging.rename(final)
        except IntegrityError:
            continue
        return get_version(engine=engine, name=name, version=version)
    raise Conflict(f"could not register a version of {name!r}: too many concurrent registrations")


def _decode(row) -> dict[str, Any]:
    item = dict(row._mapping)
    item["schema"] = json.loads(item.pop("schema_fields") or "null")
    item["metrics"] = json.loads(item["metrics"])
    item["promotion"] = json.loads(item["promotion"]) if item["promotion"] else None
    item["id"] = f"{item['name']}@{item['version']}"
    return item


def public(record: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """A version as clients see it (the API, the CLI's --json): its folder relative to the service's data
    folder, not a server path."""
    path = Path(record["path"])
    try:
        shown = str(path.relative_to(data_dir.resolve()))
    except ValueError:
        shown = path.name
    return {**record, "path": shown}


def get_version(*, engine: Engine, name: str, version: int) -> dict[str, Any]:
    if not 0 < version < MAX_VERSION:
        raise AdapterNotFoundError(f"adapter {name}@{version} does not exist")
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT {COLUMNS} FROM adapters WHERE name = :n AND version = :v"), {"n": name, "v": version}
        ).first()
        if row is None:
            raise AdapterNotFoundError(f"adapter {name}@{version} does not exist")
        aliases = [
            r[0]
            for r in conn.execute(
                text("SELECT alias FROM adapter_aliases WHERE name = :n AND version = :v ORDER BY alias"),
                {"n": name, "v": version},
            )
        ]
    return {**_decode(row), "aliases": aliases}


def resolve(*, engine: Engine, ref: str) -> dict[str, Any]:
    """`name`, `name@latest`, `name@<version>` or `name@<alias>` → that version's record."""
    name, _, tag = ref.partition("@")
    if not NAME.match(name):
        raise AdapterNotFoundError(f"adapter {ref!r} does not exist")
    with engine.connect() as conn:
        if tag in ("", "latest"):
            version = conn.execute(text("SELECT MAX(version) FROM adapters WHERE name = :n"), {"n": name}).scalar()
        elif tag.isdigit():
            version = int(tag) if len(tag) <= 18 else None  # past any version a registry holds
        else:
            version = conn.execute(
                text("SELECT version FROM adapter_aliases WHERE name = :n AND alias = :a"), {"n": name, "a": tag}
            ).scalar()
    if version is None:
        raise AdapterNotFoundError(f"adapter {ref!r} does not exist" + (f" (no alias {tag!r})" if tag else ""))
    return get_version(engine=engine, name=name, version=int(version))


def registry(engine: Engine) -> Callable[[str], dict[str, Any]]:
    """`resolve` bound to this registry: what adapter bundles are resolved through (`inference/bundle.py`)."""
    return lambda ref: resolve(engine=engine, ref=ref)


def list_adapters(*, engine: Engine) -> list[dict[str, Any]]:
    """One entry per name: its versions (newest first) and aliases."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {COLUMNS} FROM adapters ORDER BY name, version DESC")).all()
        aliases = (
            conn.execute(text("SELECT name, alias, version FROM adapter_aliases ORDER BY name, alias")).tuples().all()
        )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = _decode(row)
        entry = out.setdefault(
            item["name"], {"name": item["name"], "latest": item["version"], "aliases": {}, "versions": []}
        )
        entry["versions"].append(item)
    for name, alias, version in aliases:
        if name in out:
            out[name]["aliases"][alias] = version
    return list(out.values())


def record_decision(*, engine: Engine, name: str, version: int, decision: dict[str, Any]) -> None:
    """Keep an eval-gated promotion decision (promoted or not, and its numbers) with the version."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE adapters SET promotion = :d WHERE name = :n AND version = :v"),
            {"d": json.dumps(decision), "n": name, "v": version},
        )


def set_alias(*, engine: Engine, name: str, alias: str, version: int, reason: str | None = None) -> dict[str, Any]:
    """Point `name@alias` at `version` (promote), remembering where it pointed before."""
    check_alias(alias)
    get_version(engine=engine, name=name, version=version)
    for attempt in range(3):
        try:
            with engine.begin() as conn:  # the first statement writes: the alias row stays locked until commit
                moved = conn.execute(
                    text("UPDATE adapter_aliases SET version = :v, updated_at = :t WHERE name = :n AND alias = :a"),
                    {"n": name, "a": alias, "v": version, "t": now_iso()},
                ).rowcount
                if not moved:
                    conn.execute(
                        text("INSERT INTO adapter_aliases (name, alias, version, updated_at) VALUES (:n, :a, :v, :t)"),
                        {"n": name, "a": alias, "v": version, "t": now_iso()},
                    )
                _remember(conn, name=name, alias=alias, version=version, reason=reason or "promoted")
            break
        except IntegrityError:  # the same new alias created concurrently: take the other path
            if attempt == 2:
                raise
    return alias_state(engine=engine, name=name, alias=alias)


def rollback_alias(*, engine: Engine, name: str, alias: str) -> dict[str, Any]:
    """Move `name@alias` back to the version it pointed at before its current one."""
    history = alias_state(engine=engine, name=name, alias=alias)["history"]
    current = history[0]["version"]
    earlier = next((h["version"] for h in history[1:] if h["version"] != current), None)
    if earlier is None:
        raise Conflict(f"{name}@{alias} has no earlier version to roll back to")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE adapter_aliases SET version = :v, updated_at = :t WHERE name = :n AND alias = :a"),
            {"n": name, "a": alias, "v": earlier, "t": now_iso()},
        )
        _remember(conn, name=name, alias=alias, version=earlier, reason=f"rolled back from version {current}")
    return alias_state(engine=engine, name=name, alias=alias)


def _remember(conn, *, name: str, alias: str, version: int, reason: str) -> None:
    conn.execute(
        text(
            "INSERT INTO adapter_alias_history (name, alias, seq, version, reason, set_at) SELECT :n, :a, "
            "COALESCE(MAX(seq), 0) + 1, :v, :r, :t FROM adapter_alias_history WHERE name = :n AND alias = :a"
        ),
        {"n": name, "a": alias, "v": version, "r": reason, "t": now_iso()},
    )


def alias_state(*, engine: Engine, name: str, alias: str) -> dict[str, Any]:
    with engine.connect() as conn:
        version = conn.execute(
            text("SELECT version FROM adapter_aliases WHERE name = :n AND alias = :a"), {"n": name, "a": alias}
        ).scalar()
        history = conn.execute(
            text(
                "SELECT version, reason, set_at FROM adapter_alias_history WHERE name = :n AND "
                "alias = :a ORDER BY seq DESC"
            ),
            {"n": name, "a": alias},
        ).all()
    if version is None:
        raise AdapterNotFoundError(f"alias {name}@{alias} does not exist")
    return {"name": name, "alias": alias, "version": version, "history": [dict(h._mapping) for h in history]}


def delete_version(*, engine: Engine, name: str, version: int) -> None:
    """Remove a version, unless an alias points at it or a queued/running job uses it."""
    record = get_version(engine=engine, name=name, version=version)
    if record["aliases"]:
        raise Conflict(f"{name}@{version} is in use by alias(es) {record['aliases']}; move them first")
    with engine.connect() as conn:
        active = conn.execute(text("SELECT id, params FROM jobs WHERE status IN ('queued', 'running')")).tuples().all()
    for job_id, params in active:
        used = json.loads(params).get("adapter")
        if used and _same(engine, used, name, version):
            raise Conflict(f"{name}@{version} is in use by job {job_id}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM adapters WHERE name = :n AND version = :v"), {"n": name, "v": version})
    shutil.rmtree(record["path"], ignore_errors=True)


def _same(engine: Engine, ref: str, name: str, version: int) -> bool:
    try:
        used = resolve(engine=engine, ref=ref)
    except NotFound:
        return False
    return used["name"] == name and used["version"] == version
