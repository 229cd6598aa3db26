"""Span-copy decoding: string fields whose value must be copied out of the document are decoded under
a grammar that only allows substrings of the document text, or of its normalised variant (every
whitespace run, line breaks included, made one space: an address printed over three lines comes out
on one). Every other part of the answer stays under the JSON Schema, as without span copy.

The grammar is llguidance Lark written from the (bounded) schema: objects, arrays and unions that hold
a copied field are spelled out as rules, with the separators json.dumps writes (the training answers'
layout); every part without one is a `%json` block. A copied string is one lexeme, its quotes around the
intersection (`&`) of
- `%regex {"substring_chunks": [...]}` over the text's characters, each JSON-escaped (`"` → `\\"`,
  a line break → `\\n`): any run of whole chunks is a valid JSON string body whose decoded value is
  a substring of the text, and no escape can be cut in half;
- the field's maxLength / minLength, counted in decoded characters, and twice maxLength in emitted
  characters (the token budget `constrained.bound_schema` gives a string);
- the field's `pattern`, when it has one (typed fields: a date or an amount that is both a span of
  the document and of the given form). The pattern is read as a regex over the emitted characters,
  which equal the decoded ones unless the value holds a quote, a backslash or a control character.
With the quotes inside the lexeme, the opening quote is refused where no span fits (a typed field
of a document without a date or amount of that form then can only be null).

Which fields are copied, `span_copy`:
- False: none (the plain JSON Schema grammar);
- True: every string field without `enum`, `const`, `format` or `pattern`, plus every field whose
  schema says `"x-copy": true` (the way to make a typed field a span too); `"x-copy": false` opts a
  field out;
- names: exactly these fields, as dotted paths through objects (`vendor.name`); arrays are
  transparent (`line_items.description`). Each must name a string field.

Limits: inside an object that holds a copied field, only its declared properties are written
(additional properties are never emitted), and nodes using `allOf`, `not`, `if`, `$ref`,
`prefixItems` or `uniqueItems` are left whole to `%json`, so fields below them are not copied. A
copied field can still be null when its schema allows null, and "" unless its minLength says no;
a typed (pattern) or minLength field that cannot be null needs a fitting span in the text, else no
answer completes (the decode stops with invalid JSON): give such fields a null alternative.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Literal

from backend.errors import InvalidRequest
from backend.inference.constrained import JSON_LAYOUT, MAX_VALUE_CHARS

COPY_KEY = "x-copy"
SpanCopy = bool | str | Iterable[str]

_UNSUPPORTED = ("allOf", "not", "if", "$ref", "prefixItems", "uniqueItems")
_TYPED = ("enum", "const", "format", "pattern")
# One decoded character of a JSON string body, as the chunks spell it.
_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u[0-9a-fA-F]{4})'


def normalise(text: str) -> str:
    """Whitespace runs (line breaks included) as one space."""
    return re.sub(r"\s+", " ", text)


def is_copied(value: str, text: str) -> bool:
    """Whether a value is a substring of the text or of its normalised variant."""
    return value in text or value in normalise(text)


def copy_paths(schema: dict[str, Any], span_copy: SpanCopy) -> set[str]:
    """The dotted paths of the fields decoded as spans (raises ValueError for a named path that is
    not a string field of the schema)."""
    wanted = _selection(span_copy)
    if wanted is None:
        return set()
    found: set[str] = set()
    _walk(schema, "", wanted, found)
    if wanted is not True and wanted - found:
        raise InvalidRequest(f"span copy: {', '.join(sorted(wanted - found))} is not a string field of the schema")
    return found


def span_grammar(schema: dict[str, Any], text: str, span_copy: SpanCopy) -> str | None:
    """The compiled llguidance grammar of answers to a bounded schema (`constrained.bound_schema`)
    whose copied fields are spans of `text`; None when no field is copied."""
    from llguidance import LLMatcher

    paths = copy_paths(schema, span_copy)
    if not paths:
        return None
    lark = _Lark(text, paths).build(schema)
    grammar = LLMatcher.grammar_from_lark(lark)
    error = LLMatcher.validate_grammar(grammar)
    if error:
        raise InvalidRequest(f"span-copy grammar: {error}")
    return grammar


def _selection(span_copy: SpanCopy) -> set[str] | Literal[True] | None:
    if span_copy is False or span_copy is None:
        return None
    if span_copy is True:
        return True
    names = {span_copy} if isinstance(span_copy, str) else set(span_copy)
    return names or None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _alternatives(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A union node split into its alternatives (outer keywords kept on each), else None."""
    for key in ("anyOf", "oneOf"):
        if key in node:
            rest = {k: v for k, v in node.items() if k != key}
            return [{**rest, **alt} for alt in node[key]]
    kind = node.get("type")
    if isinstance(kind, list):
        return [{**node, "type": t} for t in kind]
    return None


def _kind(node: dict[str, Any]) -> str | None:
    kind = node.get("type")
    if kind is None and "properties" in node:
        return "object"
    return kind if isinstance(kind, str) else None


def _wanted(node: dict[str, Any], path: str, wanted: set[str] | Literal[True]) -> bool:
    if wanted is True:
        mark = node.get(COPY_KEY)
        return mark is True or (mark is None and not any(k in node for k in _TYPED))
    return path in wanted


def _walk(node: Any, path: str, wanted: set[str] | Literal[True], found: set[str]) -> bool:
    """Whether the node holds a copied field; their paths are added to `found`."""
    if not isinstance(node, dict) or any(k in node for k in _UNSUPPORTED):
        return False
    alternatives = _alternatives(node)
    if alternatives is not None:
        return any([_walk(alt, path, wanted, found) for alt in alternatives])
    kind = _kind(node)
    if kind == "string" and _wanted(node, path, wanted):
        found.add(path)
        return True
    if kind == "object":
        return any([_walk(v, _join(path, k), wanted, found) for k, v in node.get("properties", {}).items()])
    if kind == "array":
        return _walk(node.get("items", {}), path, wanted, found)
    return False


class _Lark:
    def __init__(self, text: str, paths: set[str]):
        self.paths = paths
        self.rules: list[str] = []
        forms = list(dict.fromkeys([text, normalise(text)]))
        chunks = [
            json.dumps(
                {"substring_chunks": [json.dumps(c, ensure_ascii=False)[1:-1] for c in form]}, ensure_ascii=False
            )
            for form in forms
        ]
        self.rules.append("SPAN: " + " | ".join(f"%regex {c}" for c in chunks))

    def build(self, schema: dict[str, Any]) -> str:
        root = self.expr(schema, "")
        return "\n".join([f"start: {root}", *self.rules]) + "\n"

    def rule(self, body: str) -> str:
        name = f"r{len(self.rules)}"
        self.rules.append(f"{name}: {body}")
        return name

    def expr(self, node: dict[str, Any], path: str) -> str:
        if not _walk(node, path, self.paths, set()):
            plain = {k: v for k, v in node.items() if k != COPY_KEY}
            return self.rule(f"%json {json.dumps({**plain, 'x-guidance': JSON_LAYOUT}, ensure_ascii=False)}")
        alternatives = _alternatives(node)
        if alternatives is not None:
            return self.rule(" | ".join(self.expr(alt, path) for alt in alternatives))
        kind = _kind(node)
        if kind == "string":
            return self.span(node)
        if kind == "object":
            return self.object(node, path)
        return self.array(node, path)

    def span(self, node: dict[str, Any]) -> str:
        low, high = node.get("minLength", 0), node.get("maxLength", MAX_VALUE_CHARS)
        parts = ["(SPAN)", f"/{_CHAR}{{{low},{high}}}/", f"/(?s:.{{{low},{2 * high}}})/"]
        if "pattern" in node:
            parts.append(f"/{_pattern(node['pattern'])}/")
        name = f"COPY{len(self.rules)}"  # quotes inside the lexeme: no opening quote when no span fits
        self.rules.append(f'{name}: "\\"" ({" & ".join(parts)}) "\\""')
        return name

    def object(self, node: dict[str, Any], path: str) -> str:
        """Declared properties in order, required ones always, optional ones maybe, ", " between:
        `first_i` (nothing written yet) and `more_i` (something written) over properties i.. ."""
        required = set(node.get("required", []))
        items = [
            (
                self.rule(f"{_literal(json.dumps(k) + JSON_LAYOUT['key_separator'])} {self.expr(v, _join(path, k))}"),
                k in required,
            )
            for k, v in node.get("properties", {}).items()
        ]
        separator = _literal(JSON_LAYOUT["item_separator"])
        first = more = ""
        for item, needed in reversed(items):
            rest = f" {more}" if more else ""
            first_body = f"{item}{rest}" + ("" if needed or not first else f" | {first}")
            first = self.rule(first_body)
            more = self.rule(f"{separator} {item}{rest}" if needed else f"({separator} {item})?{rest}")
        if not items:
            return self.rule('"{" "}"')
        return self.rule(f'"{{" {first} "}}"' if required & set(node["properties"]) else f'"{{" ({first})? "}}"')

    def array(self, node: dict[str, Any], path: str) -> str:
        item = self.expr(node.get("items", {}), path)
        low, high = node.get("minItems", 0), node.get("maxItems")
        if high == 0:
            return self.rule('"[" "]"')
        tail = f"({_literal(JSON_LAYOUT['item_separator'])} {item})"
        tail += f"{{{max(low - 1, 0)},{high - 1}}}" if high is not None else "*"
        return self.rule(f'"[" {item} {tail} "]"' if low > 0 else f'"[" ({item} {tail})? "]"')


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _pattern(pattern: str) -> str:
    """A JSON Schema pattern (unanchored unless it says ^ / $) as a Lark regex body."""
    body = pattern[1:] if pattern.startswith("^") else "(?s:.*)" + pattern
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    else:
        body += "(?s:.*)"
    return "(?:" + re.sub(r"(?<!\\)/", r"\\/", body) + ")"
