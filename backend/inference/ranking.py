"""Candidate ranking after free decoding: where the adapter's training labels say what a field's values
look like (its conventions: amounts, dates, whole lines near the top), the document's candidate spans
for that field are scored by the model (`candidates.rank_fields`) and may replace the decoded value.

Modes (`extract_many(rank=...)`, `/v1/extract` `"rank"`; left out: "typed" where the adapter has label
conventions, no ranking where it has none; False: no ranking):
- "typed": amount and date fields only, and only where the decoded value is not one of the document's
  amount (date) spans — a value the document does not print is replaced by the best one it does. Cheap:
  most answers already are spans, and then nothing is scored.
- "text": "typed", plus each text field whose labels sit on whole lines (a vendor name, an address):
  its line candidates and the decoded value compete, the best-scored wins — except that a decoded value
  which already is one of the line candidates is not replaced by a shorter one (fewer words): a summed
  log-probability favours short answers, and on the development folds the shorter line it picked over a
  whole-line answer was mostly a fragment ("PARADIGM MALL" for the mall's full address line). A line
  that holds one of the field's learned `stops` (a registration number, an unclosed "(", a TEL/FAX
  label: what its labels never hold) is no candidate: on the development folds such a line ("AIK HUAT
  HARDWARE ENTERPRISE (SETIA", the first two of a three-line name) outscored the whole answer. A few
  seconds per document with a 270M model on 2 CPU cores (benchmarks/sroie_recipe.py measures it).
- "always": as "text", but an amount/date field always takes its best-scored span, even where the decoded
  value is printed in the document (the receipts recipe's mode: `benchmarks/sroie_recipe.py`).

A re-ranked field's confidence is its candidate's share of the candidates' probability — not the
decoding confidence the adapter's automation thresholds were fitted on, so a re-ranked value always
goes to a person (`stages.approvable`). Only fields
the JSON Schema lets be strings are ranked (`string_fields`): a field typed as a number keeps its value.
"""

from __future__ import annotations

import math
from typing import Any

from backend.errors import InvalidRequest
from backend.inference.candidates import (
    amount_candidates,
    date_candidates,
    line_candidates,
    logsumexp,
    meaning,
    rank_fields,
)
from backend.inference.decoding import PromptState
from backend.labels.conventions import FILE as CONVENTIONS_FILE
from backend.scoring.normalize import norm_text

MODES = ("typed", "text", "always")
DEFAULT = "typed"  # on the development folds: +0.05 micro-F1 (dates) for about 10% more time


def string_fields(schema: dict[str, Any]) -> set[str]:
    """The top-level properties of a JSON Schema whose values may be strings (candidates are strings:
    a field typed as a number keeps its decoded value)."""

    def takes_string(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        kind = node.get("type")
        if kind == "string" or (isinstance(kind, list) and "string" in kind):
            return True
        return any(takes_string(alt) for key in ("anyOf", "oneOf") for alt in node.get(key, []))

    return {name for name, node in schema.get("properties", {}).items() if takes_string(node)}


def resolve(mode: str | bool | None, conventions, label: str) -> str | None:
    """The ranking mode a request gets: None (left out) → `DEFAULT` where the adapter has label
    conventions, else none; False → none; a named mode → itself, InvalidRequest where it is unknown or
    the adapter (`label`) has no conventions to tell which fields to rank."""
    if mode is None:
        return DEFAULT if conventions is not None else None
    if mode is False:
        return None
    if mode not in MODES:
        raise InvalidRequest(f"rank: got {mode!r}, expected one of {list(MODES)} or false")
    if conventions is None:
        raise InvalidRequest(
            f"rank: {label} has no label conventions ({CONVENTIONS_FILE}, written by the trainer for "
            "extraction data) to tell which fields to rank; leave rank out"
        )
    return str(mode)


def rankable(conventions, names: list[str], mode: str, only: set[str] | None = None) -> dict[str, str]:
    """{field: kind} for the fields of `names` (and of `only`, when given) that `mode` ranks under these
    conventions."""
    if mode not in MODES:
        raise InvalidRequest(f"rank: got {mode!r}, expected one of {list(MODES)}")
    out = {}
    for name in names:
        if only is not None and name not in only:
            continue
        conv = conventions.fields.get(name) if conventions is not None else None
        if conv is None:
            continue
        if conv.kind in ("amount", "date"):
            out[name] = conv.kind
        elif conv.kind == "text" and conv.lines and mode != "typed":
            out[name] = "text"
    return out


def candidates_for(conventions, field: str, kind: str, text: str) -> list[str]:
    if kind == "amount":
        return [c.value for c in amount_candidates(text)]
    if kind == "date":
        return [c.value for c in date_candidates(text)]
    conv = conventions.fields[field]
    lines = line_candidates(text, conv.lines["within"], conv.lines["max_lines"], conv.lines.get("prefixes", False))
    stops = conventions.patterns.stops
    return [c.value for c in lines if not any(stops[name].search(c.value) for name in conv.stops if name in stops)]


def to_score(
    names: list[str], values: dict[str, Any], text: str, conventions, mode: str = "typed", only: set[str] | None = None
) -> tuple[dict[str, str], dict[str, tuple[list[str], str]], set[str]]:
    """What ranking a decoded answer (`values`) takes, before any model call: the fields `mode` ranks
    ({field: kind}), those with candidates to score ({field: (candidates, kind)}; empty: nothing to
    score) and the text fields whose answer is one of their line candidates."""
    kinds = rankable(conventions, names, mode, only)
    asked, on_lines = {}, set()
    for field, kind in kinds.items():
        options = candidates_for(conventions, field, kind, text)
        free = values.get(field)
        key = meaning(kind)
        if kind == "text":
            if isinstance(free, str) and norm_text(free) in {norm_text(o) for o in options}:
                on_lines.add(field)
            if isinstance(free, str) and free.strip():
                options.append(free)  # the model's own answer competes
        else:
            free_key = key(str(free)) if free is not None else None
            printed = free_key is not None and any(key(v) == free_key for v in options)
            if printed and mode != "always":
                continue  # the answer is one of the document's spans: nothing to decide
        if options:
            asked[field] = (options, kind)
    return kinds, asked, on_lines


def rank_document(
    model,
    tokenizer,
    prompt_ids: list[int],
    names: list[str],
    values: dict[str, Any],
    text: str,
    conventions,
    mode: str = "typed",
    device=None,
    only: set[str] | None = None,
    prompt: PromptState | None = None,
) -> dict[str, dict[str, Any]]:
    """{field: {"free", "best", "choice", "share", "candidates"}} for each field `mode` ranks (see the module
    docstring; with `only`, among those fields); `values` (the decoded answer) is what the model
    conditions on before each field. `prompt`: the prompt as decoding read it (`to_score` tells
    beforehand whether any scoring will need it), or None to read it again."""
    kinds, asked, on_lines = to_score(names, values, text, conventions, mode, only)
    ranked = rank_fields(model, tokenizer, prompt_ids, names, values, asked, device, prompt) if asked else {}
    decision = {}
    for field in kinds:
        scored = ranked.get(field) or []
        free = values.get(field)
        best = scored[0][0] if scored else None  # scored: one per meaning, best first
        share = math.exp(scored[0][1] - logsumexp([s for _, s in scored])) if scored else None
        choice = best if scored else free
        if field in on_lines and isinstance(free, str) and len(str(best).split()) < len(free.split()):
            choice = free  # a whole-line answer is not cut short (see the module docstring)
        decision[field] = {"free": free, "best": best, "choice": choice, "share": share, "candidates": len(scored)}
    return decision
