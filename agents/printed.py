"""Numbers as the document prints them. A number field decoded as a JSON number stops where JSON
numbers stop — at a thousands separator: "25,000.00" came out as 25. So the agents ask for every
number as the printed text ("25,000.00", "1.250,00", "-950.00"), bounded by a pattern, and read it
afterwards in the document's number style (`backend.values`); `as_printed` keeps what was printed,
per field path, next to the parsed value.
"""

from __future__ import annotations

import copy
from typing import Any

from backend.inference.constrained import schema_of
from backend.values import number_style, parse_amount

# An amount as printed: digits with grouping and a decimal mark, an optional sign or brackets.
PRINTED = {"type": "string", "maxLength": 24, "pattern": r"^[-(]?[0-9][0-9.,' ]{0,20}[0-9][)]?$|^[0-9]$"}


def _kinds(node: dict[str, Any]) -> set[str]:
    kind = node.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def printed_schema(schema: Any) -> dict[str, Any]:
    """The schema with every number (or integer) asked for as its printed text."""

    def swap(node: Any) -> Any:
        if isinstance(node, list):
            return [swap(v) for v in node]
        if not isinstance(node, dict):
            return node
        if _kinds(node) & {"number", "integer"} and not _kinds(node) - {"number", "integer", "null"}:
            out = {
                k: v
                for k, v in node.items()
                if k not in ("type", "minimum", "maximum", "multipleOf", "exclusiveMinimum", "exclusiveMaximum")
            }
            if "null" in _kinds(node):
                return {**out, "anyOf": [dict(PRINTED), {"type": "null"}]}
            return {**out, **PRINTED}
        return {k: swap(v) for k, v in node.items()}

    return swap(copy.deepcopy(schema_of(schema)))


def read_printed(fields: dict[str, Any], schema: Any, text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The answer with each number field's printed text read as a number in the document's number style
    (None when it does not read as one), and the printed texts by field path."""
    style = number_style(text)
    printed: dict[str, str] = {}

    def read(value: Any, node: Any, path: str) -> Any:
        if not isinstance(node, dict):
            return value
        for option in node.get("anyOf") or node.get("oneOf") or []:
            if isinstance(option, dict) and _fits(value, option):
                return read(value, option, path)
        kinds = _kinds(node)
        if isinstance(value, dict) and isinstance(node.get("properties"), dict):
            return {k: read(v, node["properties"].get(k), f"{path}.{k}" if path else k) for k, v in value.items()}
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [read(v, node["items"], f"{path}[{i}]") for i, v in enumerate(value)]
        if kinds & {"number", "integer"} and isinstance(value, str):
            printed[path] = value
            number = parse_amount(value, decimal=style)
            return int(number) if number is not None and "integer" in kinds and number.is_integer() else number
        return value

    return read(fields, schema_of(schema), ""), printed


def _fits(value: Any, option: dict[str, Any]) -> bool:
    kinds = _kinds(option)
    if value is None:
        return "null" in kinds
    if isinstance(value, dict):
        return "object" in kinds or "properties" in option
    if isinstance(value, list):
        return "array" in kinds
    return bool(kinds & {"number", "integer"})  # a printed number (a string) or a number as such
