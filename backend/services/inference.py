"""What the inference routes need, without FastAPI: which model answers a request, and extraction.

A request names a model the OpenAI way (`model`: a base model name or an adapter reference such as
`receipts`, `receipts@3`, `receipts@prod`) and/or an `adapter`. Base models that may be served are the
bundled ones, the service's default and the bases of registered adapters — never an arbitrary path
sent by a caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import Engine

from backend.errors import InvalidRequest, NotFound
from backend.inference.batcher import Batcher
from backend.inference.bundle import AdapterBundle, resolve
from backend.inference.constrained import check_schema_size, schema_of
from backend.inference.extraction import Document, constrained_chat
from backend.inference.pool import GenRequest
from backend.inference.spec import ExtractionSpec
from backend.inference.tools import Tool, chat_with_tools
from backend.models.adapters import AdapterNotFoundError
from backend.models.bundled import BUNDLED
from backend.prompts import NAMED_SCHEMAS, parse_answer
from backend.services import adapters


class ModelNotFoundError(NotFound):
    pass


def servable_bases(*, engine: Engine, default_base: str) -> list[str]:
    registered = {v["base_model"] for a in adapters.list_adapters(engine=engine) for v in a["versions"]}
    return sorted({*BUNDLED, default_base, *registered})


def resolve_target(
    *, engine: Engine, default_base: str, model: str | None = None, adapter: str | None = None
) -> tuple[AdapterBundle, dict[str, Any] | None]:
    """What answers a request, and the adapter's registry record (None for a base model). `adapter` must
    be registered; `model` is a registered adapter or else a servable base model — never a folder."""
    if adapter:
        return resolve(adapter, registry=adapters.registry(engine))
    if model:
        try:
            return resolve(model, registry=adapters.registry(engine))
        except AdapterNotFoundError:
            pass
    base = model or default_base
    allowed = servable_bases(engine=engine, default_base=default_base)
    if base not in allowed:
        raise ModelNotFoundError(
            f"model {base!r} not found: use a registered adapter (GET /v1/adapters) or a base model among {allowed}"
        )
    return resolve(base)


def extraction_spec(
    schema: dict | list | str | None, record: dict[str, Any] | None, *, limits: tuple[int, int] = (200, 8)
) -> ExtractionSpec:
    """What a request extracts: its JSON Schema object, list of field names or named schema, else the
    adapter's training schema. `limits`: the most properties and the deepest nesting a schema may have
    (SchemaTooLargeError past them)."""
    if schema is None:
        if not (record and record.get("schema")):
            raise InvalidRequest(
                "schema: none given, and the model has no training schema; send a schema, a list of "
                f"field names or one of {sorted(NAMED_SCHEMAS)}"
            )
        return ExtractionSpec.from_names(record["schema"])
    return ExtractionSpec.of(schema, max_properties=limits[0], max_depth=limits[1])


def extract(
    *,
    batcher: Batcher,
    target: AdapterBundle,
    text: str,
    spec: ExtractionSpec,
    max_new_tokens: int | None,
    limit: int,
    constrained: bool = True,
    review_confidence: float = 0.7,
    rank: str | Literal[False] | None = None,
    disconnected: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Fields from one document, with the same prompt template the adapter was trained with.

    Constrained (the default): decoding follows the JSON Schema, so the answer always parses and
    matches it; each field gets a confidence and its span in the document (or None: not found), and
    fields below `review_confidence` or not found are listed in `review`. An adapter with per-field
    thresholds (its thresholds.json: `tunebridge eval --constrained --thresholds`) marks each field
    `auto` or `review` in `automation`, with its `target_precision`, and `review` lists the given fields
    not marked `auto`. `rank`: candidate ranking after decoding (`inference/ranking.py`; left out:
    "typed" where the adapter has label conventions; False: none), constrained only."""
    messages = spec.messages(text)
    if not constrained:
        if rank:
            raise InvalidRequest("rank: needs constrained decoding; drop rank or constrained=false")
        request = GenRequest(tuple((m["role"], m["content"]) for m in messages), max_new_tokens=max_new_tokens or 512)
        result = batcher.generate(target, request, disconnected=disconnected)
        parsed = parse_answer(result.text, spec.fields)
        return {
            "model": target.label,
            "fields": parsed.fields,
            "valid_json": parsed.valid_json,
            "missing": parsed.missing,
            "extra": parsed.extra,
            "raw": result.text,
            "finish_reason": result.finish_reason,
            "constrained": False,
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
        }
    return batcher.extract(
        target,
        Document(text, spec, max_new_tokens, rank=rank),
        limit=limit,
        review_confidence=review_confidence,
        disconnected=disconnected,
    )


def chat_structured(
    *,
    batcher: Batcher,
    target: AdapterBundle,
    messages: list[dict[str, str]],
    json_schema: dict[str, Any],
    max_new_tokens: int | None,
    limit: int,
    limits: tuple[int, int] = (200, 8),
) -> dict[str, Any]:
    """A chat answer under a JSON Schema (OpenAI `response_format`); ValueError for a schema past the
    size limits or that cannot be decoded under a bound, or a prompt too long for the model."""
    check_schema_size(schema_of(json_schema), max_properties=limits[0], max_depth=limits[1])
    batcher.pool.admit(target, messages, min(max_new_tokens or 1, limit))
    return constrained_chat(batcher.pool, target, messages, json_schema, max_new_tokens=max_new_tokens, limit=limit)


def chat_tools(
    *,
    batcher: Batcher,
    target: AdapterBundle,
    messages: list[dict[str, Any]],
    tools: list[Tool],
    allowed: list[Tool],
    text: bool,
    max_new_tokens: int | None,
    limit: int,
    stop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A chat answer with function calling (OpenAI `tools`): every tool in the prompt, a call to one of
    `allowed` decoded under its parameters' grammar, or (`text`) a plain-text answer instead."""
    return chat_with_tools(
        batcher.pool,
        target,
        messages,
        tools,
        allowed=allowed,
        text=text,
        max_new_tokens=max_new_tokens,
        limit=limit,
        stop=stop,
    )
