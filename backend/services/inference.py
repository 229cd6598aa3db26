"""What the inference routes need, without FastAPI: which model answers a request, and extraction.

A request names a model the OpenAI way (`model`: a base model name or an adapter reference such as
`receipts`, `receipts@3`, `receipts@prod`) and/or an `adapter`. Base models that may be served are the
bundled ones, the service's default and the bases of registered adapters — never an arbitrary path
sent by a caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend.inference.batcher import Batcher
from backend.inference.pool import GenRequest, Target
from backend.models.bundled import BUNDLED
from backend.prompts import NAMED_SCHEMAS, ExtractionSchema, extraction_messages, parse_answer
from backend.services import adapters
from backend.services.errors import NotFoundError


class ModelNotFoundError(NotFoundError):
    pass


def servable_bases(*, engine: Engine, default_base: str) -> list[str]:
    registered = {v["base_model"] for a in adapters.list_adapters(engine=engine) for v in a["versions"]}
    return sorted({*BUNDLED, default_base, *registered})


def resolve_target(*, engine: Engine, default_base: str, model: str | None = None,
                   adapter: str | None = None) -> tuple[Target, dict[str, Any] | None]:
    """The Target for a request, and the adapter's registry record (None for a base model)."""
    ref = adapter or model
    if ref:
        try:
            record = adapters.resolve(engine=engine, ref=ref)
        except adapters.AdapterNotFoundError:
            if adapter:
                raise
        else:
            folder = Path(record["path"])
            tokenizer = folder / "tokenizer"
            return Target(record["base_model"], record["id"], str(folder / "adapter"),
                          str(tokenizer) if tokenizer.is_dir() else None), record
    base = model or default_base
    allowed = servable_bases(engine=engine, default_base=default_base)
    if base not in allowed:
        raise ModelNotFoundError(f"model {base!r} not found: use a registered adapter (GET /v1/adapters) or a "
                                 f"base model among {allowed}")
    return Target(base), None


def extraction_schema(schema: dict | list | str | None, record: dict[str, Any] | None) -> ExtractionSchema:
    """A JSON Schema object, a list of field names, a named schema, or the adapter's training schema."""
    if isinstance(schema, dict):
        return ExtractionSchema.from_json_schema(schema)
    if isinstance(schema, list):
        if not schema or not all(isinstance(n, str) and n for n in schema):
            raise ValueError("schema: a list of field names must be non-empty strings")
        return ExtractionSchema.from_names(schema)
    if isinstance(schema, str):
        if schema not in NAMED_SCHEMAS:
            raise ValueError(f"schema: got {schema!r}, expected one of {sorted(NAMED_SCHEMAS)} or a schema object")
        return NAMED_SCHEMAS[schema]
    if record and record.get("schema"):
        return ExtractionSchema.from_names(record["schema"])
    raise ValueError("schema: none given, and the model has no training schema; send a schema, a list of field "
                     f"names or one of {sorted(NAMED_SCHEMAS)}")


def extract(*, batcher: Batcher, target: Target, text: str, schema: ExtractionSchema,
            max_new_tokens: int) -> dict[str, Any]:
    """Fields from one document, with the same prompt template the adapter was trained with."""
    messages = tuple((m["role"], m["content"]) for m in extraction_messages(text, schema))
    result = batcher.generate(target, GenRequest(messages, max_new_tokens=max_new_tokens))
    parsed = parse_answer(result.text, schema)
    return {"model": target.label, "fields": parsed.fields, "valid_json": parsed.valid_json,
            "missing": parsed.missing, "extra": parsed.extra, "raw": result.text, "finish_reason": result.finish_reason,
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}}
