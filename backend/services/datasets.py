"""Named datasets: append-only JSONL files under `data_dir/datasets/`, counted in the database.

Uploads are validated whole with the training core's parser before anything is written: a body with
one bad line stores nothing and the error lists every bad line. Records are stored as sent (not
converted to chats), so extraction records keep their text and gold fields for evaluation.
"""

from __future__ import annotations

import fcntl
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from backend.services.errors import NotFoundError
from backend.storage import now_iso
from backend.training.data import DatasetError, load_jsonl, parse_jsonl

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class DatasetNotFoundError(NotFoundError):
    pass


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"dataset name {name!r} is invalid: use 1-64 lower-case letters, digits, '-' or '_', "
                         "starting with a letter or digit")
    return name


def dataset_file(*, data_dir: Path, name: str) -> Path:
    return data_dir / "datasets" / f"{check_name(name)}.jsonl"


@dataclass
class Appended:
    dataset: str
    added: int
    total: int
    formats: dict[str, int]


class DuplicateDeliveryError(Exception):
    """A webhook delivery id that was stored before; nothing was stored again."""


class DatasetTooLargeError(ValueError):
    """Appending would grow the dataset past its size limit; nothing was stored."""


def append_examples(*, engine: Engine, data_dir: Path, name: str, body: bytes, source: str,
                    delivery_id: str | None = None, max_bytes: int | None = None) -> Appended:
    """Validate every line, then append them all (or nothing). With a `delivery_id`, the delivery is
    recorded in the same transaction, so a replayed delivery stores nothing twice."""
    path = dataset_file(data_dir=data_dir, name=name)
    lines = body.splitlines()
    parsed = parse_jsonl([(source, lines)], dedupe=False)
    if parsed.issues:
        raise DatasetError(f"{source}: {len(parsed.issues)} invalid line(s); nothing was stored", parsed.issues,
                           limit=100)
    if not parsed.examples:
        raise DatasetError(f"{source}: no examples (the body is empty)")
    keep = [line.strip() for line in lines if line.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    now = now_iso()
    with open(path, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        size = handle.seek(0, os.SEEK_END)
        adding = sum(len(line) + 1 for line in keep)
        if max_bytes is not None and size + adding > max_bytes:
            fcntl.flock(handle, fcntl.LOCK_UN)
            raise DatasetTooLargeError(f"dataset {name!r} holds {size} bytes; adding {adding} would pass its limit of "
                                       f"{max_bytes} bytes (TUNEBRIDGE_MAX_DATASET_MB); nothing was stored")
        try:
            with engine.begin() as conn:  # commits only once the lines are on disk; the file is cut back otherwise
                if delivery_id is not None:
                    try:
                        conn.execute(text("INSERT INTO webhook_deliveries (delivery_id, dataset, added, received_at) "
                                          "VALUES (:d, :name, :n, :t)"),
                                     {"d": delivery_id, "name": name, "n": len(keep), "t": now})
                    except IntegrityError as exc:
                        raise DuplicateDeliveryError(delivery_id) from exc
                conn.execute(text("INSERT INTO datasets (name, examples, created_at, updated_at) VALUES "
                                  "(:name, 0, :t, :t) ON CONFLICT (name) DO NOTHING"), {"name": name, "t": now})
                conn.execute(text("UPDATE datasets SET examples = examples + :n, updated_at = :t WHERE name = :name"),
                             {"n": len(keep), "t": now, "name": name})
                total = conn.execute(text("SELECT examples FROM datasets WHERE name = :name"), {"name": name}).scalar()
                handle.write(b"".join(line + b"\n" for line in keep))
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            handle.truncate(size)
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return Appended(name, len(keep), int(total), dict(parsed.formats))


def list_datasets(*, engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, examples, created_at, updated_at FROM datasets ORDER BY name"))
        return [dict(row._mapping) for row in rows]


def dataset_stats(*, engine: Engine, data_dir: Path, name: str, tokenizer=None, max_length: int = 2048) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name, examples, created_at, updated_at FROM datasets WHERE name = :n"),
                           {"n": check_name(name)}).first()
    if row is None:
        raise DatasetNotFoundError(f"dataset {name!r} does not exist")
    loaded = load_jsonl(dataset_file(data_dir=data_dir, name=name), dedupe=False)
    chars = [sum(len(m["content"]) for m in ex.messages) for ex in loaded.examples]
    stats: dict[str, Any] = {**dict(row._mapping), **loaded.summary(), "chars": _spread(chars)}
    if tokenizer is not None:
        from backend.training.tokenize import encode_examples

        encoded = encode_examples(tokenizer, loaded.examples, max_length=10**9)
        lengths = [len(e.input_ids) for e in encoded.items]
        stats["tokens"] = {**_spread(lengths), "over_max_length": sum(n > max_length for n in lengths),
                           "max_length": max_length}
    return stats


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1]}
