"""Constrained extraction of one document: the training prompt, decoding under the JSON Schema,
then fields, per-field confidence, grounding spans and the fields that need a human look.
The API (`/v1/extract`) and evaluation (`tunebridge eval --constrained`) both call `extract`."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from backend.inference.constrained import bound_schema, compile_grammar, constrained_generate, field_confidence
from backend.inference.grounding import ground
from backend.inference.pool import ModelPool, Target, stop_ids
from backend.prompts import ExtractionSchema, extraction_messages, parse_answer


def extract(pool: ModelPool, target: Target, *, text: str, schema: ExtractionSchema, json_schema: dict[str, Any],
            max_new_tokens: int | None = None, limit: int = 4096, review_confidence: float = 0.7) -> dict[str, Any]:
    bounded, budget = bound_schema(json_schema)
    cap = min(max_new_tokens or budget, limit)
    messages = extraction_messages(text, schema)
    with pool.using(target) as (model, tokenizer, context):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        if len(ids) + cap > context:
            raise ValueError(f"prompt of {len(ids)} tokens + {cap} answer tokens exceed the model's context of "
                             f"{context}; shorten the document")
        result = constrained_generate(model, tokenizer, ids, grammar(bounded), max_new_tokens=cap,
                                      device=next(model.parameters()).device, eos_ids=stop_ids(model, tokenizer))
    parsed = parse_answer(result.text, schema)
    confidence = field_confidence(result, schema.names)
    grounding = ground(parsed.fields, text)
    review = [n for n in schema.names if parsed.fields.get(n) is not None and (
        grounding.get(n) is None or (confidence.get(n) or 0) < review_confidence)]
    return {"model": target.label, "fields": parsed.fields, "confidence": confidence, "grounding": grounding,
            "review": review, "valid_json": parsed.valid_json, "missing": parsed.missing, "extra": parsed.extra,
            "raw": result.text, "finish_reason": result.finish_reason, "constrained": True,
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": len(result.tokens),
                      "forced_tokens": result.forced, "forward_passes": result.forward_passes}}


def grammar(json_schema: dict[str, Any]) -> str:
    """Compiled once per distinct schema. The key keeps the schema's property order: llguidance emits
    properties in that order, and the answers were trained in it (sorting them cost 0.02 micro-F1)."""
    return _compiled(json.dumps(json_schema))


@lru_cache(maxsize=64)
def _compiled(schema_json: str) -> str:
    return compile_grammar(json.loads(schema_json))
