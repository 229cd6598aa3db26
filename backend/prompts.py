"""The extraction prompt: one template, used by training data preparation and by extraction inference.

A record `{"text": ..., "fields": {...}}` becomes a chat: a short system instruction, a user turn
listing the fields to extract followed by the document, and the assistant's answer as compact JSON
with the keys in schema order (absent fields as null). Keep it short: every prompt token costs
training and inference time on CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidRequest

SYSTEM = (
    "You extract fields from business documents. Reply with one JSON object that has exactly the "
    "listed keys. Copy each value as it is written in the document; use null when it is absent."
)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    description: str = ""


@dataclass(frozen=True)
class ExtractionSchema:
    """Ordered field names (with optional descriptions) that an extraction answer contains."""

    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @classmethod
    def from_names(cls, names: list[str]) -> ExtractionSchema:
        return cls(tuple(FieldSpec(n) for n in names))

    @classmethod
    def from_json_schema(cls, schema: Any) -> ExtractionSchema:
        """Accept a JSON Schema object, or a pydantic model class (its `model_json_schema()`)."""
        if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
            schema = schema.model_json_schema()
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise InvalidRequest(f"schema needs a non-empty 'properties' object, got keys {sorted(schema)}")
        return cls(tuple(FieldSpec(k, str(v.get("description", ""))) for k, v in props.items()))


def extraction_messages(text: str, schema: ExtractionSchema) -> list[dict[str, str]]:
    """System + user turns for one document (the prompt the model answers)."""
    lines = [f"- {f.name}: {f.description}" if f.description else f"- {f.name}" for f in schema.fields]
    user = "Fields:\n" + "\n".join(lines) + "\n\nDocument:\n" + text
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def extraction_answer(values: dict[str, Any], schema: ExtractionSchema) -> str:
    """The assistant's target: compact JSON, keys in schema order, missing keys as null."""
    return json.dumps({name: values.get(name) for name in schema.names}, ensure_ascii=False)


# Schemas callers can name instead of sending one. Field names only: the receipt schema is exactly
# what the bundled SROIE receipts are labelled with, so the prompt matches training token for token.
NAMED_SCHEMAS: dict[str, ExtractionSchema] = {
    "receipt": ExtractionSchema.from_names(["company", "date", "address", "total"]),
    "invoice": ExtractionSchema.from_names(
        [
            "invoice_number",
            "invoice_date",
            "due_date",
            "vendor_name",
            "customer_name",
            "currency",
            "subtotal",
            "tax",
            "total",
        ]
    ),
}


@dataclass
class ParsedAnswer:
    fields: dict[str, Any]  # every schema key, None where the model gave nothing
    valid_json: bool  # the raw answer was one JSON object
    missing: list[str]  # schema keys absent from the answer
    extra: list[str]  # keys in the answer that the schema does not have


def parse_answer(raw: str, schema: ExtractionSchema) -> ParsedAnswer:
    """Read a model's answer back into fields (the inverse of `extraction_answer`)."""
    text = raw.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    valid = isinstance(value, dict)
    if not valid:  # a JSON object wrapped in prose or a code fence: take the outermost braces
        start, end = text.find("{"), text.rfind("}")
        try:
            value = json.loads(text[start : end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            value = None
    got = value if isinstance(value, dict) else {}
    return ParsedAnswer(
        {n: got.get(n) for n in schema.names},
        valid,
        [n for n in schema.names if n not in got],
        [k for k in got if k not in schema.names],
    )
