"""Read training JSONL in any supported format, validate every line, dedupe and split.

Formats (detected per line by its keys):
- chat:        {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...]}
- sharegpt:    {"conversations": [{"from": "system"|"human"|"gpt"|"tool", "value": str}, ...]}
- alpaca:      {"instruction": str, "input": str?, "output": str}
- dolly:       {"instruction": str, "context": str?, "response": str}
- completion:  {"prompt": str, "completion": str}
- extraction:  {"text": str, "fields": {name: value, ...}}  (turned into chat by backend.prompts)
Every bad line is reported with file, line number and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import InvalidRequest
from backend.prompts import ExtractionSchema, extraction_answer, extraction_messages

ROLES = {"system", "user", "assistant", "tool"}
# ShareGPT's speaker names and the chat roles they stand for.
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "tool": "tool"}


@dataclass(frozen=True)
class LineIssue:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class DatasetError(InvalidRequest):
    """The dataset cannot be trained on; `issues` lists every offending line."""

    def __init__(self, summary: str, issues: list[LineIssue] | None = None, limit: int = 20):
        self.issues = issues or []
        shown = "\n".join(f"  {i}" for i in self.issues[:limit])
        more = f"\n  ... and {len(self.issues) - limit} more" if len(self.issues) > limit else ""
        super().__init__(summary + (f"\n{shown}{more}" if shown else ""))


@dataclass
class Example:
    messages: list[dict[str, str]]
    origin: str  # "file:line", so later errors (too long, ...) still point at the source
    format: str
    record: dict | None = None  # the extraction record as given ({"text", "fields"}), for evaluation


@dataclass
class LoadedData:
    examples: list[Example]
    issues: list[LineIssue] = field(default_factory=list)
    duplicates: int = 0
    formats: Counter = field(default_factory=Counter)
    schema: ExtractionSchema | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "examples": len(self.examples),
            "invalid_lines": len(self.issues),
            "duplicates_dropped": self.duplicates,
            "formats": dict(self.formats),
            "schema": self.schema.names if self.schema else None,
        }


class RecordError(InvalidRequest):
    """One record is malformed; the message names the field."""


def _text(record: dict, key: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RecordError(f"field {key!r} is empty")
    return value


def _user_assistant(user: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def _turns(record: dict, key: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    """Validate a list of turns (`key`) and return them as chat messages; errors name the field."""
    turns = record[key]
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"field {key!r} must be a non-empty list")
    for i, m in enumerate(turns):
        if not isinstance(m, dict):
            raise RecordError(f"{key}[{i}] must be an object, got {type(m).__name__}")
        if m.get(role_key) not in roles:
            raise RecordError(f"{key}[{i}].{role_key} must be one of {sorted(roles)}, got {m.get(role_key)!r}")
        if not isinstance(m.get(content_key), str):
            raise RecordError(f"{key}[{i}].{content_key} must be a string, got {type(m.get(content_key)).__name__}")
    last = len(turns) - 1
    if roles[turns[last][role_key]] != "assistant":
        raise RecordError(
            f"{key}[{last}]: the last message must be the assistant's answer, got {role_key} {turns[last][role_key]!r}"
        )
    if not turns[last][content_key].strip():
        raise RecordError(f"{key}[{last}].{content_key} (the answer) is empty")
    return [{"role": roles[m[role_key]], "content": m[content_key]} for m in turns]


def _chat(record: dict) -> list[dict[str, str]]:
    return _turns(record, "messages", "role", "content", {r: r for r in ROLES})


def _sharegpt(record: dict) -> list[dict[str, str]]:
    return _turns(record, "conversations", "from", "value", SHAREGPT_ROLES)


def _alpaca(record: dict) -> list[dict[str, str]]:
    instruction, extra = _text(record, "instruction"), _text(record, "input", required=False)
    return _user_assistant(instruction + (f"\n\n{extra}" if extra.strip() else ""), _text(record, "output"))


def _dolly(record: dict) -> list[dict[str, str]]:
    instruction, extra = _text(record, "instruction"), _text(record, "context", required=False)
    return _user_assistant(instruction + (f"\n\n{extra}" if extra.strip() else ""), _text(record, "response"))


def _completion(record: dict) -> list[dict[str, str]]:
    return _user_assistant(_text(record, "prompt"), _text(record, "completion"))


def _extraction_fields(record: dict) -> dict[str, Any]:
    _text(record, "text")
    fields = record.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise RecordError(f"field 'fields' must be a non-empty object, got {type(fields).__name__}")
    return fields


def detect_format(record: dict) -> str:
    if "messages" in record:
        return "chat"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "dolly" if ("response" in record or "context" in record) else "alpaca"
    if "prompt" in record and "completion" in record:
        return "completion"
    if "text" in record and "fields" in record:
        return "extraction"
    raise RecordError(
        f"unknown record format with keys {sorted(record)}; expected 'messages', "
        "'conversations', 'instruction'+'output', 'instruction'+'response', 'prompt'+'completion' or 'text'+'fields'"
    )


CONVERTERS = {"chat": _chat, "sharegpt": _sharegpt, "alpaca": _alpaca, "dolly": _dolly, "completion": _completion}


def load_jsonl(
    paths: str | Path | Sequence[str | Path],
    *,
    schema: ExtractionSchema | None = None,
    dedupe: bool = True,
) -> LoadedData:
    """Parse and validate JSONL files. Invalid lines go to `issues`, never silently dropped."""
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    for path in files:
        if not path.is_file():
            raise DatasetError(f"data file {path} does not exist")
    handles = [path.open("rb") for path in files]
    try:
        return parse_jsonl([(str(p), h) for p, h in zip(files, handles)], schema=schema, dedupe=dedupe)
    finally:
        for handle in handles:
            handle.close()


def parse_jsonl(
    sources: list[tuple[str, Iterable[bytes]]],
    *,
    schema: ExtractionSchema | None = None,
    dedupe: bool = True,
) -> LoadedData:
    """Validate JSONL given as (name, lines) pairs: files, or a request body named for its errors."""
    records: list[tuple[dict, str, str, LineIssue]] = []
    issues: list[LineIssue] = []
    for name, lines in sources:
        for number, raw in enumerate(lines, start=1):
            where = LineIssue(name, number, "")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                issues.append(LineIssue(name, number, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                issues.append(LineIssue(name, number, f"invalid JSON: {exc.msg} at column {exc.colno}"))
                continue
            except RecursionError:
                issues.append(LineIssue(name, number, "invalid JSON: nested too deeply"))
                continue
            if not isinstance(record, dict):
                issues.append(LineIssue(name, number, f"expected a JSON object, got {type(record).__name__}"))
                continue
            try:
                fmt = detect_format(record)
                if fmt == "extraction":
                    _extraction_fields(record)
                records.append((record, fmt, f"{name}:{number}", where))
            except RecordError as exc:
                issues.append(LineIssue(name, number, str(exc)))

    if schema is None and any(fmt == "extraction" for _, fmt, _, _ in records):
        names: dict[str, None] = {}
        for record, fmt, _, _ in records:
            if fmt == "extraction":
                names.update(dict.fromkeys(record["fields"]))
        schema = ExtractionSchema.from_names(list(names))

    examples: list[Example] = []
    formats: Counter = Counter()
    seen: set[str] = set()
    duplicates = 0
    for record, fmt, origin, where in records:
        try:
            if fmt == "extraction":
                assert schema is not None  # set above whenever there are extraction records
                unknown = sorted(set(record["fields"]) - set(schema.names))
                if unknown:
                    raise RecordError(f"fields {unknown} are not in the schema {schema.names}")
                messages = extraction_chat(record, schema)
            else:
                messages = CONVERTERS[fmt](record)
        except RecordError as exc:
            issues.append(LineIssue(where.file, where.line, str(exc)))
            continue
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        if key in seen:
            duplicates += 1
            if dedupe:
                continue
        seen.add(key)
        formats[fmt] += 1
        examples.append(
            Example(messages=messages, origin=origin, format=fmt, record=record if fmt == "extraction" else None)
        )
    return LoadedData(examples, issues, duplicates, formats, schema)


def extraction_chat(record: dict, schema: ExtractionSchema) -> list[dict[str, str]]:
    """The chat an extraction record trains on: the prompt with its text, and its fields as the answer."""
    messages = extraction_messages(record["text"], schema)
    messages.append({"role": "assistant", "content": extraction_answer(record["fields"], schema)})
    return messages


def check_usable(data: LoadedData, *, skip_invalid: bool, source: str) -> None:
    """Refuse empty or invalid data unless the caller chose to skip invalid lines."""
    if not data.examples:
        what = "all lines are invalid" if data.issues else "it has no examples"
        raise DatasetError(f"cannot train on {source}: {what}", data.issues)
    if data.issues and not skip_invalid:
        raise DatasetError(
            f"{source}: {len(data.issues)} invalid line(s) ({len(data.examples)} valid); fix them, "
            "or pass --skip-invalid to train on the valid ones",
            data.issues,
        )


def split(examples: list[Example], *, val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded shuffle, then hold out `val_fraction` (at least one example when the fraction > 0)."""
    if not 0 <= val_fraction < 1:
        raise InvalidRequest(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = 0 if val_fraction == 0 else max(1, round(len(examples) * val_fraction))
    if n_val >= len(examples):
        n_val = 0
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    return train, val


def data_sha256(paths: Sequence[str | Path]) -> str:
    """The SHA-256 of the data files' bytes, one after another: for one file, the file's own hash (what
    the adapter registry records as the hash of the data a version was trained on)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
