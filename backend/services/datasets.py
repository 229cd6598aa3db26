"""Named datasets: append-only JSONL files under `data_dir/datasets/`, counted in the database
together with the length of each file that committed appends wrote (what survives a crash).

Uploads are validated whole with the training core's parser before anything is written: a body with
one bad line stores nothing and the error lists every bad line. Records are stored as sent (not
converted to chats), so extraction records keep their text and gold fields for evaluation.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from backend.errors import Conflict, InvalidRequest, NotFound, TooLarge
from backend.storage import crashpoints, now_iso
from backend.training.data import DatasetError, parse_jsonl

log = logging.getLogger("tunebridge.datasets")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class DatasetNotFoundError(NotFound):
    pass


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidRequest(
            f"dataset name {name!r} is invalid: use 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def dataset_file(*, data_dir: Path, name: str) -> Path:
    return data_dir / "datasets" / f"{check_name(name)}.jsonl"


@dataclass
class Appended:
    dataset: str
    added: int
    total: int
    formats: dict[str, int]


class DuplicateDeliveryError(Conflict):
    """A webhook delivery id that was stored before; nothing was stored again."""


class DatasetTooLargeError(TooLarge):
    """Appending would grow the dataset past its size limit; nothing was stored."""


def append_examples(
    *,
    engine: Engine,
    data_dir: Path,
    name: str,
    body: bytes,
    source: str,
    delivery_id: str | None = None,
    max_bytes: int | None = None,
) -> Appended:
    """Validate every line, then append them all (or nothing). With a `delivery_id`, the delivery is
    recorded in the same transaction, so a replayed delivery stores nothing twice.

    Crash safety: the file is written and fsynced inside the transaction that records the new count
    and the file's new committed length. A crash before that commit leaves bytes past the committed
    length; they are cut off before the next append and on start (`repair_datasets`), and readers only
    ever read the committed length (`read_committed`)."""
    path = dataset_file(data_dir=data_dir, name=name)
    lines = body.splitlines()
    parsed = parse_jsonl([(source, lines)], dedupe=False)
    if parsed.issues:
        raise DatasetError(
            f"{source}: {len(parsed.issues)} invalid line(s); nothing was stored", parsed.issues, limit=100
        )
    if not parsed.examples:
        raise DatasetError(f"{source}: no examples (the body is empty)")
    keep = [line.strip() for line in lines if line.strip()]
    chunk = b"".join(line + b"\n" for line in keep)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = now_iso()
    with _locked(path) as handle:
        committed: int | None = None
        try:
            with engine.begin() as conn:  # commits only once the lines are on disk; the file is cut back otherwise
                committed = _committed(conn, handle, name=name)
                if max_bytes is not None and committed + len(chunk) > max_bytes:
                    raise DatasetTooLargeError(
                        f"dataset {name!r} holds {committed} bytes; adding {len(chunk)} would pass its limit of "
                        f"{max_bytes} bytes (TUNEBRIDGE_MAX_DATASET_MB); nothing was stored"
                    )
                if delivery_id is not None:
                    try:
                        conn.execute(
                            text(
                                "INSERT INTO webhook_deliveries (delivery_id, dataset, added, received_at) "
                                "VALUES (:d, :name, :n, :t)"
                            ),
                            {"d": delivery_id, "name": name, "n": len(keep), "t": now},
                        )
                    except IntegrityError as exc:
                        raise DuplicateDeliveryError(delivery_id) from exc
                conn.execute(
                    text(
                        "INSERT INTO datasets (name, examples, committed_bytes, created_at, updated_at) "
                        "VALUES (:name, 0, 0, :t, :t) ON CONFLICT (name) DO NOTHING"
                    ),
                    {"name": name, "t": now},
                )
                conn.execute(
                    text(
                        "UPDATE datasets SET examples = examples + :n, committed_bytes = :b, "
                        "updated_at = :t WHERE name = :name"
                    ),
                    {"n": len(keep), "b": committed + len(chunk), "t": now, "name": name},
                )
                total: int = conn.execute(
                    text("SELECT examples FROM datasets WHERE name = :name"), {"name": name}
                ).scalar_one()
                _write_synced(handle, chunk, at=committed)
                crashpoints.reach("dataset-before-commit")
        except BaseException:
            if committed is not None:
                handle.truncate(committed)
            raise
    crashpoints.reach("dataset-after-commit")
    return Appended(name, len(keep), int(total), dict(parsed.formats))


@contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """The dataset file, open for reading and writing under an exclusive lock (every process that
    appends to or repairs it takes this lock)."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_synced(handle: Any, chunk: bytes, *, at: int) -> None:
    handle.seek(at)
    half = len(chunk) // 2
    handle.write(chunk[:half])
    handle.flush()
    crashpoints.reach("dataset-mid-write")
    handle.write(chunk[half:])
    handle.flush()
    os.fsync(handle.fileno())


def _committed(conn: Any, handle: Any, *, name: str) -> int:
    """The committed length of the (locked) file, cutting off anything a crash left past it."""
    row = conn.execute(text("SELECT examples, committed_bytes FROM datasets WHERE name = :n"), {"n": name}).first()
    size = handle.seek(0, os.SEEK_END)
    if row is None:
        committed = 0
    elif row[1] is None:  # recorded before lengths were kept: the first `examples` whole lines
        committed = _prefix_of_lines(handle, int(row[0]))
        conn.execute(text("UPDATE datasets SET committed_bytes = :b WHERE name = :n"), {"b": committed, "n": name})
    else:
        committed = int(row[1])
    if size > committed:
        log.warning(
            "dataset %r: cut %d byte(s) past its last committed append (a write was interrupted)",
            name,
            size - committed,
        )
        handle.truncate(committed)
    elif size < committed:
        lines = _prefix_of_lines(handle, 10**18)
        count = _count_lines(handle, lines)
        log.error(
            "dataset %r: the file is %d byte(s) shorter than its record (changed outside tunebridge?); "
            "recounted it as %d example(s)",
            name,
            committed - size,
            count,
        )
        handle.truncate(lines)
        conn.execute(
            text("UPDATE datasets SET examples = :e, committed_bytes = :b WHERE name = :n"),
            {"e": count, "b": lines, "n": name},
        )
        committed = lines
    return committed


def _prefix_of_lines(handle: Any, lines: int) -> int:
    """The byte length of the file's first `lines` newline-terminated lines (fewer if it has fewer)."""
    handle.seek(0)
    length = seen = 0
    while seen < lines:
        line = handle.readline()
        if not line.endswith(b"\n"):
            break
        length += len(line)
        seen += 1
    return length


def _count_lines(handle: Any, length: int) -> int:
    handle.seek(0)
    return handle.read(length).count(b"\n")


def repair_datasets(*, engine: Engine, data_dir: Path) -> list[str]:
    """Bring every dataset file back to its last committed state (run on start); the names repaired."""
    folder = data_dir / "datasets"
    repaired: list[str] = []
    if not folder.is_dir():
        return repaired
    for path in sorted(folder.glob("*.jsonl")):
        name = path.stem
        if not NAME.match(name):
            continue
        with _locked(path) as handle, engine.begin() as conn:
            before = handle.seek(0, os.SEEK_END)
            if _committed(conn, handle, name=name) != before:
                repaired.append(name)
    return repaired


def read_committed(*, engine: Engine, data_dir: Path, name: str) -> bytes:
    """The dataset's committed examples as JSONL bytes (never a half-written append)."""
    path = dataset_file(data_dir=data_dir, name=name)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT examples, committed_bytes FROM datasets WHERE name = :n"), {"n": name}).first()
    if row is None:
        raise DatasetNotFoundError(f"dataset {name!r} does not exist")
    with open(path, "rb") as handle:
        length = _prefix_of_lines(handle, int(row[0])) if row[1] is None else int(row[1])
        handle.seek(0)
        return handle.read(length)


def list_datasets(*, engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, examples, created_at, updated_at FROM datasets ORDER BY name"))
        return [dict(row._mapping) for row in rows]


def dataset_stats(
    *, engine: Engine, data_dir: Path, name: str, tokenizer=None, max_length: int = 2048
) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT name, examples, created_at, updated_at FROM datasets WHERE name = :n"), {"n": check_name(name)}
        ).first()
    if row is None:
        raise DatasetNotFoundError(f"dataset {name!r} does not exist")
    body = read_committed(engine=engine, data_dir=data_dir, name=name)
    loaded = parse_jsonl([(f"dataset {name}", body.splitlines())], dedupe=False)
    chars = [sum(len(m["content"]) for m in ex.messages) for ex in loaded.examples]
    stats: dict[str, Any] = {**dict(row._mapping), **loaded.summary(), "chars": _spread(chars)}
    if tokenizer is not None:
        from backend.training.tokenize import encode_examples

        encoded = encode_examples(tokenizer, loaded.examples, max_length=10**9)
        lengths = [len(e.input_ids) for e in encoded.items]
        stats["tokens"] = {
            **_spread(lengths),
            "over_max_length": sum(n > max_length for n in lengths),
            "max_length": max_length,
        }
    return stats


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def document_texts(*, engine: Engine, data_dir: Path, name: str) -> list[str]:
    """The document text of each of the dataset's examples, in order: an extraction record's `text`,
    otherwise its first user message (what the model was shown). `DatasetNotFoundError` when the
    dataset does not exist."""
    body = read_committed(engine=engine, data_dir=data_dir, name=check_name(name))
    loaded = parse_jsonl([(f"dataset {name}", body.splitlines())], dedupe=False)
    texts: list[str] = []
    for example in loaded.examples:
        if example.record is not None and isinstance(example.record.get("text"), str):
            texts.append(example.record["text"])
            continue
        texts += [m["content"] for m in example.messages if m.get("role") == "user"][:1]
    return texts
