"""What to extract, built once: `ExtractionSpec`.

Callers describe a schema in several shapes — a JSON Schema object, a pydantic model class, a list of
field names, the name of a shipped schema. `ExtractionSpec.of` turns any of them into the one object
extraction works with: the prompt's field list (names and descriptions, in order), the self-contained
JSON Schema, its bounded form and token budget (every answer fits), and the compiled grammar. The
service, the agents, evaluation and the benchmarks all build a spec and pass it down; nothing below
converts a schema again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from backend.errors import InvalidRequest
from backend.inference.constrained import bound_schema, check_schema_size, flat_schema, grammar, schema_of
from backend.inference.ranking import string_fields
from backend.prompts import NAMED_SCHEMAS, ExtractionSchema, extraction_messages


@dataclass(frozen=True, eq=False)
class ExtractionSpec:
    fields: ExtractionSchema  # the prompt's field list, in the order answers are written
    json_schema: dict[str, Any]  # self-contained: local references inlined
    bounded: dict[str, Any]  # every string, array and number bounded
    budget: int  # the most tokens an answer under `bounded` can take

    @classmethod
    def of(cls, schema: Any, *, max_properties: int | None = None, max_depth: int | None = None) -> ExtractionSpec:
        """From a JSON Schema object, a pydantic model class, a list of field names or a shipped schema's
        name (`receipt`, `invoice`). With limits, a schema past them is refused (SchemaTooLargeError)
        before anything is compiled. ValueError names what was wrong with the schema."""
        if isinstance(schema, str):
            if schema not in NAMED_SCHEMAS:
                raise InvalidRequest(
                    f"schema: got {schema!r}, expected one of {sorted(NAMED_SCHEMAS)} or a schema object"
                )
            return cls.from_names(NAMED_SCHEMAS[schema].names)
        if isinstance(schema, (list, tuple)):
            if not schema or not all(isinstance(n, str) and n for n in schema):
                raise InvalidRequest("schema: a list of field names must be non-empty strings")
            resolved = flat_schema(list(schema))
        else:
            resolved = schema_of(schema)
        if max_properties is not None and max_depth is not None:
            check_schema_size(resolved, max_properties=max_properties, max_depth=max_depth)
        if isinstance(schema, (list, tuple)):
            return cls.from_names(list(schema))
        try:  # the prompt lists the fields as the caller described them (a nested model's own docstring is not
            #   the field's description)
            fields = ExtractionSchema.from_json_schema(schema)
        except AttributeError as exc:  # properties that are not objects
            raise InvalidRequest(f"schema: every property must be a schema object ({exc})") from exc
        return _cached(json.dumps(resolved), fields)

    @classmethod
    def from_names(cls, names: list[str]) -> ExtractionSpec:
        """Every field a bounded string or null (the shape extraction training data is labelled in)."""
        return _cached(json.dumps(flat_schema(list(names))), ExtractionSchema.from_names(list(names)))

    @property
    def names(self) -> list[str]:
        return self.fields.names

    @cached_property
    def strings(self) -> set[str]:
        """The top-level fields whose values may be strings (the ones candidate ranking may choose)."""
        return string_fields(self.bounded)

    @cached_property
    def grammar(self) -> str:
        """The llguidance grammar of `bounded`. Property order is kept: answers were trained in it."""
        return grammar(self.bounded)

    def messages(self, text: str) -> list[dict[str, str]]:
        """The extraction prompt for one document (the template training used)."""
        return extraction_messages(text, self.fields)


@lru_cache(maxsize=128)
def _cached(resolved_json: str, fields: ExtractionSchema) -> ExtractionSpec:
    """One spec per distinct schema: its grammar is compiled once, however many requests use it."""
    resolved = json.loads(resolved_json)
    bounded, budget = bound_schema(resolved)
    return ExtractionSpec(fields, resolved, bounded, budget)
