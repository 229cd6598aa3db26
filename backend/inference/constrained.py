"""JSON Schemas for constrained decoding: bounding them so every answer fits a token budget, compiling
them for llguidance, and reading per-field confidence back from a decoded answer. The decode loop
itself is `backend/inference/decoding.py`.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from llguidance import LLMatcher

from backend.errors import InvalidRequest
from backend.inference.decoding import Constrained

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions


MAX_VALUE_CHARS = 160
# The separators json.dumps writes: the training answers (backend/prompts.py) look exactly like this.
JSON_LAYOUT: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def flat_schema(names: list[str], *, max_length: int = MAX_VALUE_CHARS) -> dict[str, Any]:
    """The JSON Schema of an extraction answer: every field a bounded string or null, no other keys.
    Bounded strings stop a small model from looping inside a value until the token cap."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(names),
        "properties": {n: {"anyOf": [{"type": "string", "maxLength": max_length}, {"type": "null"}]} for n in names},
    }


def compile_grammar(json_schema: dict[str, Any]) -> str:
    grammar = LLMatcher.grammar_from_json_schema(
        json.dumps(json_schema), defaults=cast("JsonCompileOptions", JSON_LAYOUT)
    )
    error = LLMatcher.validate_grammar(grammar)
    if error:
        raise InvalidRequest(f"schema cannot be used for constrained decoding: {error}")
    return grammar


def grammar(json_schema: dict[str, Any]) -> str:
    """`compile_grammar`, once per distinct schema. The key keeps the schema's property order: llguidance
    emits properties in that order, and the answers were trained in it (sorting them cost 0.02 micro-F1)."""
    return _compiled(json.dumps(json_schema))


@lru_cache(maxsize=64)
def _compiled(schema_json: str) -> str:
    return compile_grammar(json.loads(schema_json))


def value_spans(text: str, names: list[str]) -> dict[str, tuple[int, int]]:
    """Where each top-level field's value sits in a JSON answer (the quotes of a string excluded)."""
    decoder, found, position = json.JSONDecoder(), {}, 0
    for name in names:
        key = json.dumps(name)
        at = text.find(key, position)
        if at < 0:
            continue
        colon = text.find(":", at + len(key))
        start = colon + 1
        while start < len(text) and text[start] in " \n\t":
            start += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        found[name] = (start + 1, end - 1) if isinstance(value, str) else (start, end)
        position = end
    return found


def field_confidence(result: Constrained, names: list[str]) -> dict[str, float | None]:
    """Per field: exp(mean log-probability) of the sampled tokens that overlap its value, i.e. the
    geometric mean of the model's own probabilities for the value's tokens; 1.0 when every token of
    the value was forced; None when the field is absent from the answer."""
    out: dict[str, float | None] = {}
    for name, (start, end) in value_spans(result.text, names).items():
        lps = [
            lp
            for (a, b), lp in zip(result.spans, result.logprobs)
            if a < max(end, start + 1) and b > start and lp is not None
        ]
        out[name] = math.exp(sum(lps) / len(lps)) if lps else 1.0
    for name in names:
        out.setdefault(name, None)
    return out


MAX_ITEMS = 32


def bound_schema(schema: dict[str, Any], *, max_length: int = MAX_VALUE_CHARS) -> tuple[dict[str, Any], int]:
    """The schema with every string given a maxLength (`max_length`), every array a maxItems and every
    number bounds (±10^12, 4 decimals) where it has none, and the most tokens any answer it allows can
    take (a token is at least one character). With that budget a constrained answer is never cut off
    mid-JSON."""
    out = dict(schema)
    kind = out.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    budget = 0
    for key in ("anyOf", "oneOf"):
        if key in out:
            parts = [bound_schema(s, max_length=max_length) for s in out[key]]
            out[key] = [p for p, _ in parts]
            budget = max(budget, *(b for _, b in parts))
    if "enum" in out:
        budget = max(budget, *(len(json.dumps(v)) for v in out["enum"]))
    if "string" in kinds:
        out.setdefault("maxLength", max_length)
        budget = max(budget, 2 * out["maxLength"] + 2)  # an escaped character ("\n") takes two
    if kinds & {"number", "integer"}:  # digits are bounded too: a small model can run on in a number forever
        out.setdefault("minimum", -(10**12))
        out.setdefault("maximum", 10**12)
        if "number" in kinds:
            out.setdefault("multipleOf", 0.0001)
        budget = max(budget, 24)
    if kinds & {"boolean", "null"}:
        budget = max(budget, 5)
    if "object" in kinds or "properties" in out:
        props = {k: bound_schema(v, max_length=max_length) for k, v in out.get("properties", {}).items()}
        out["properties"] = {k: p for k, (p, _) in props.items()}
        out.setdefault("additionalProperties", False)
        budget = max(budget, 2 + sum(len(k) + 4 + b for k, (_, b) in props.items()))
    if "array" in kinds:
        item, item_budget = bound_schema(out.get("items", {"type": "string"}), max_length=max_length)
        out["items"] = item
        out.setdefault("maxItems", MAX_ITEMS)
        budget = max(budget, 2 + out["maxItems"] * (item_budget + 1))
    return out, max(budget, 8)


def schema_of(spec: Any) -> dict[str, Any]:
    """A self-contained JSON Schema from a pydantic model class or a JSON Schema document: local
    references (`#/$defs/...`, `#/definitions/...`, as pydantic writes nested models) are inlined so
    that every part can be bounded. A recursive schema has no bounded answer and is refused."""
    if isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        spec = spec.model_json_schema()
    if not isinstance(spec, dict):
        raise InvalidRequest(f"schema: expected a JSON Schema object or a pydantic model, got {type(spec).__name__}")
    defs = {**spec.get("definitions", {}), **spec.get("$defs", {})}

    def inline(node: Any, trail: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(v, trail) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if not ref.startswith(("#/$defs/", "#/definitions/")) or name not in defs:
                raise InvalidRequest(f"schema: reference {ref!r} is not a local definition")
            if name in trail:
                raise InvalidRequest(
                    f"schema: {' -> '.join(trail + (name,))} is recursive; answers could be "
                    "endless, so it cannot be decoded under a bound"
                )
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return inline({**defs[name], **rest}, trail + (name,))
        return {k: inline(v, trail) for k, v in node.items() if k not in ("$defs", "definitions")}

    return inline(spec, ())


class SchemaTooLargeError(InvalidRequest):
    """A schema past the service's size limits: refused before it is compiled or queued."""


def check_schema_size(schema: dict[str, Any], *, max_properties: int, max_depth: int) -> None:
    """Refuse a (self-contained) schema with more properties in all than `max_properties`, or objects
    and arrays nested deeper than `max_depth`: its grammar and prompt would hold the model for minutes."""
    properties, deepest = 0, 0
    stack: list[tuple[Any, int, str]] = [(schema, 0, "")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, list):
            stack += [(v, depth, where) for v in node]
            continue
        if not isinstance(node, dict):
            continue
        props = node.get("properties")
        nested = depth + (1 if isinstance(props, dict) or "items" in node else 0)
        if nested > max_depth:
            raise SchemaTooLargeError(
                f"schema: nested {nested} levels deep at {where or 'the top'}, over the limit "
                f"of {max_depth} (TUNEBRIDGE_MAX_SCHEMA_DEPTH)"
            )
        deepest = max(deepest, nested)
        if isinstance(props, dict):
            properties += len(props)
            if properties > max_properties:
                raise SchemaTooLargeError(
                    f"schema: more than {max_properties} properties in all (the limit, "
                    "TUNEBRIDGE_MAX_SCHEMA_PROPERTIES); split the extraction"
                )
            stack += [(v, nested, f"{where}.{k}" if where else k) for k, v in props.items()]
        for key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
            if isinstance(node.get(key), (dict, list)):
                stack.append((node[key], nested, f"{where}[]" if key == "items" else where))
