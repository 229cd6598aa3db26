"""The document graph: intake → classify → extract → validate ↔ repair (capped) → decide →
human review (an interrupt, when needed) → finalize.

`build_graph(deps, checkpointer)` takes everything from outside — the model, the policy, the store,
the webhook — so tests inject a scripted model and a temporary store. With a SQLite checkpointer a
document paused for review survives a restart; `Command(resume={"fields": {...}, "decision": ...})`
continues it with the reviewer's corrections, which also go to the labelled-data webhook.

Rules decide (agents/policy.py); the model extracts and explains. The repair loop re-asks the model
with the validation errors; every attempt is kept in `attempts`, and the last one stands.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agents import feedback
from agents import policy as rules
from agents.classify import classify as classify_text
from agents.intake import chunks, read_document
from agents.models import Extraction, Model
from agents.printed import printed_schema, read_printed
from agents.schemas import DOC_TYPES, OTHER
from agents.state import OUTPUT_KEYS, DocumentInput, DocumentState
from agents.store import Store
from agents.validators import validate as validate_record
from backend.errors import InvalidRequest
from backend.inference.grounding import ground, leaves

CUSTOM = "custom"  # a user-supplied JSON Schema


@dataclass
class Deps:
    model: Model
    policy: rules.Policy
    store: Store | None = None
    webhook: feedback.Webhook | None = None
    deliver: Callable[[str, dict[str, Any]], None] | None = None  # corrections in-process (the service), not HTTP
    max_repairs: int = 2
    schema: dict[str, Any] | None = None  # a user JSON Schema: every document is of type "custom"
    max_chars: int = 6000  # longer documents are extracted in chunks and the results merged
    today: dt.date = field(default_factory=dt.date.today)


def build_graph(deps: Deps, checkpointer=None):
    def intake(state: DocumentState) -> dict[str, Any]:
        doc = read_document(state["path"])
        return {
            "doc_id": doc.sha256[:16],
            "text": doc.text,
            "pages": [{"number": p.number, "source": p.source, "characters": len(p.text)} for p in doc.pages],
            "attempts": [],
            "repairs": 0,
        }

    def classify(state: DocumentState) -> dict[str, Any]:
        if deps.schema is not None:
            return {"doc_type": CUSTOM, "classification": {"doc_type": CUSTOM, "given": "schema"}}
        if state.get("doc_type"):
            if state["doc_type"] not in DOC_TYPES:
                raise InvalidRequest(f"document type {state['doc_type']!r} is not one of {sorted(DOC_TYPES)}")
            return {"classification": {"doc_type": state["doc_type"], "given": "--type"}}
        found = classify_text(state["text"])
        return {"doc_type": found["doc_type"], "classification": found}

    def extract(state: DocumentState) -> dict[str, Any]:
        schema = _schema(deps, _doc_type(state))
        if schema is None:
            return {"fields": {}, "confidence": {}, "grounding": {}, "model": deps.model.name}
        out = _extract(deps, state["text"], schema)
        return _taken(out, "extract")

    def validate(state: DocumentState) -> dict[str, Any]:
        return {"validation": _validate(deps, _doc_type(state), state.get("fields") or {})}

    def route_validation(state: DocumentState) -> Literal["repair", "decide"]:
        errors = [i for i in state.get("validation", []) if i["severity"] == "error"]
        return "repair" if errors and state.get("repairs", 0) < deps.max_repairs else "decide"

    def repair(state: DocumentState) -> dict[str, Any]:
        notes = [f"{i['field']}: {i['message']}" for i in state["validation"] if i["severity"] == "error"]
        out = _extract(deps, state["text"], _schema(deps, _doc_type(state)), notes=notes)
        return {**_taken(out, "repair"), "repairs": state.get("repairs", 0) + 1}

    def decide(state: DocumentState) -> dict[str, Any]:
        return _decision(deps, state, state.get("fields") or {}, state.get("validation") or [])

    def route_decision(state: DocumentState) -> Literal["human_review", "finalize"]:
        return "human_review" if state["decision"] == "review" or state.get("flags") else "finalize"

    def human_review(state: DocumentState) -> dict[str, Any]:
        answer = interrupt(
            {
                key: state.get(key)
                for key in (
                    "doc_id",
                    "path",
                    "doc_type",
                    "fields",
                    "confidence",
                    "automation",
                    "validation",
                    "fired",
                    "flags",
                    "decision",
                    "rationale",
                )
            }
        )
        if not isinstance(answer, dict):
            raise InvalidRequest(f"a review answer is a JSON object, got {type(answer).__name__}")
        fields = apply_corrections(state.get("fields") or {}, answer.get("fields") or {})
        validation = _validate(deps, _doc_type(state), fields)
        outcome = _decision(
            deps, {**state, "grounding": ground(fields, state["text"])}, fields, validation, explain=False
        )
        chosen = answer.get("decision")
        if chosen is not None and chosen not in rules.SEVERITY:
            raise InvalidRequest(f"decision: got {chosen!r}, expected one of {sorted(rules.SEVERITY)}")
        # The reviewer vouches for the values they saw: only the rules and the validators still speak.
        unresolved = [f for f in outcome["flags"] if f["why"] in ("validation", "required field missing")]
        decision = chosen or (
            rules.decide(outcome["fired"]) if outcome["fired"] else "review" if unresolved else "approve"
        )
        if fields != state.get("fields"):
            delivery = (
                "review-"
                + state["doc_id"]
                + "-"
                + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
            )
            example = feedback.labelled_example(state["text"], fields, _doc_type(state), state["path"])
            if deps.deliver is not None:
                deps.deliver(delivery, example)
            elif deps.store is not None:
                feedback.queue(deps.store, deps.webhook, delivery, example)
                feedback.flush(deps.store, deps.webhook)
        review = {
            "reviewer": answer.get("reviewer"),
            "note": answer.get("note"),
            "corrected": sorted(p for p, v in leaves(fields) if dict(leaves(state.get("fields") or {})).get(p) != v),
            "decision": decision,
            "explicit": chosen is not None,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return {
            "fields": fields,
            "grounding": ground(fields, state["text"]),
            "validation": validation,
            "fired": outcome["fired"],
            "flags": unresolved,
            "basis": outcome["basis"],
            "decision": decision,
            "review": review,
            "status": "reviewed",
        }

    def route_review(state: DocumentState) -> Literal["human_review", "finalize"]:
        """Corrections that still fail validation, and no decision given: ask again."""
        review = state.get("review") or {}
        return "human_review" if state["decision"] == "review" and not review.get("explicit") else "finalize"

    def finalize(state: DocumentState) -> dict[str, Any]:
        status = state.get("status") or "done"
        if deps.store is not None:
            deps.store.put_document(
                thread_id=state["doc_id"],
                doc_id=state["doc_id"],
                path=state["path"],
                status=status,
                doc_type=state["doc_type"],
                decision=state["decision"],
            )
        return {"status": status}

    graph = StateGraph(DocumentState, input_schema=DocumentInput)
    for name, node in [
        ("intake", intake),
        ("classify", classify),
        ("extract", extract),
        ("validate", validate),
        ("repair", repair),
        ("decide", decide),
        ("human_review", human_review),
        ("finalize", finalize),
    ]:
        graph.add_node(name, node)
    graph.add_edge(START, "intake")
    graph.add_edge("intake", "classify")
    graph.add_edge("classify", "extract")
    graph.add_edge("extract", "validate")
    graph.add_conditional_edges("validate", route_validation)
    graph.add_edge("repair", "validate")
    graph.add_conditional_edges("decide", route_decision)
    graph.add_conditional_edges("human_review", route_review)
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)


def output(state: dict[str, Any]) -> dict[str, Any]:
    """The record a document leaves (what `tunebridge extract` writes per line)."""
    return {key: state.get(key) for key in OUTPUT_KEYS}


def process(graph, store: Store | None, path, *, thread_id: str, doc_type: str | None = None):
    """Run one document on its thread — or, when the thread has run before, leave it as it is — and
    record a document held for review in the store. (state snapshot, whether it had run before)."""
    config = {"configurable": {"thread_id": thread_id}}
    state = graph.get_state(config)
    if state.values:
        return state, True
    graph.invoke({"path": str(path), "doc_type": doc_type}, config)
    state = graph.get_state(config)
    if state.next and store is not None:
        values = state.values
        store.put_document(
            thread_id=thread_id,
            doc_id=values["doc_id"],
            path=str(path),
            status="pending_review",
            doc_type=values.get("doc_type"),
            decision=values.get("decision"),
            summary={"flags": len(values.get("flags") or []), "fired": [f["rule"] for f in values.get("fired") or []]},
        )
    return state, False


def record(state) -> dict[str, Any]:
    """A state snapshot as a record: the output, its thread id, and the review request while held."""
    out = output(state.values)
    out["id"] = state.config["configurable"]["thread_id"]
    if state.next:
        out["status"] = "pending_review"
        out["review_request"] = [i.value for t in state.tasks for i in t.interrupts][:1] or None
    return out


# -- helpers -------------------------------------------------------------------------------------------
def _schema(deps: Deps, doc_type: str):
    if doc_type == CUSTOM:
        return deps.schema
    return DOC_TYPES.get(doc_type)


def _doc_type(state: DocumentState) -> str:
    """The type `classify` settled on (the input's may be None: classified when absent)."""
    doc_type = state["doc_type"]
    assert doc_type is not None, "classify sets doc_type before the nodes that read it"
    return doc_type


def _extract(deps: Deps, text: str, schema, *, notes: list[str] | None = None) -> Extraction:
    """The model's answer, numbers asked for as printed and read in the document's number style
    (`agents/printed.py`); long documents in chunks, merged."""
    parts = chunks(text, max_chars=deps.max_chars) if len(text) > deps.max_chars else [text]
    asked = printed_schema(schema)
    results = [_as_numbers(deps.model.extract(part, asked, notes=notes), schema, text) for part in parts]
    if len(results) == 1:
        return results[0]
    merged = merge(results, text)
    merged.extra["as_printed"] = {
        k: v
        for r in reversed(results)
        for k, v in r.extra.get("as_printed", {}).items()
        if k in dict(leaves(merged.fields))
    }
    return merged


def _as_numbers(out: Extraction, schema, text: str) -> Extraction:
    fields, printed = read_printed(out.fields, schema, text)
    return Extraction(
        fields,
        out.confidence,
        ground(fields, text),
        out.raw,
        out.model,
        {**out.extra, "as_printed": printed},
        out.calibrated,
        out.automation,
    )


def merge(results: list[Extraction], text: str) -> Extraction:
    """One record from the chunks of a long document: per scalar field the most confident non-null
    value; lists (line items, transactions) concatenated without repeats (chunks overlap)."""
    fields: dict[str, Any] = {}
    confidence: dict[str, float | None] = {}
    for out in results:
        for key, value in out.fields.items():
            c = out.confidence.get(key)
            if isinstance(value, list):
                seen = {json.dumps(v, sort_keys=True) for v in fields.get(key, [])}
                fields[key] = fields.get(key, []) + [v for v in value if json.dumps(v, sort_keys=True) not in seen]
                confidence[key] = (
                    min(x for x in (confidence.get(key), c) if x is not None)
                    if (confidence.get(key) is not None or c is not None)
                    else None
                )
            elif value is not None and (fields.get(key) is None or (c or 0) > (confidence.get(key) or 0)):
                fields[key], confidence[key] = value, c
            else:
                fields.setdefault(key, None)
                confidence.setdefault(key, None)
    return Extraction(
        fields,
        confidence,
        ground(fields, text),
        "\n".join(r.raw for r in results),
        results[0].model,
        {"chunks": len(results)},
        all(r.calibrated for r in results),
        _merged_marks(results, fields),
    )


def _merged_marks(results: list[Extraction], fields: dict[str, Any]) -> dict[str, str] | None:
    """A merged field is `auto` only when every chunk that gave it a value marked it `auto`."""
    if any(r.automation is None for r in results):
        return None
    marks: dict[str, str] = {}
    for name in fields:
        given = [
            r.automation.get(name, "review")
            for r in results
            if r.automation is not None and r.fields.get(name) not in (None, [], {})
        ]
        marks[name] = "auto" if given and all(m == "auto" for m in given) else "review"
    return marks


def _taken(out: Extraction, how: str) -> dict[str, Any]:
    return {
        "fields": out.fields,
        "confidence": out.confidence,
        "grounding": out.grounding,
        "model": out.model,
        "as_printed": out.extra.get("as_printed", {}),
        "calibrated": out.calibrated,
        "automation": out.automation,
        "attempts": [{"how": how, "fields": out.fields, "raw": out.raw}],
    }


def _validate(deps: Deps, doc_type: str, fields: dict[str, Any]) -> list[dict[str, Any]]:
    if doc_type == CUSTOM:
        import jsonschema

        validator = jsonschema.Draft202012Validator(deps.schema)
        return [
            {
                "code": "schema",
                "field": ".".join(map(str, e.absolute_path)) or "(record)",
                "message": e.message,
                "severity": "error",
            }
            for e in validator.iter_errors(fields)
        ]
    if doc_type not in DOC_TYPES:
        return []
    return [i.as_dict() for i in validate_record(doc_type, fields, today=deps.today)]


def _automation_flags(
    policy: rules.Policy, fields: dict[str, Any], marks: dict[str, str] | None
) -> list[dict[str, Any]]:
    """The policy's `require_auto_fields`: every given field marked `auto` by the adapter's thresholds."""
    if policy.require_auto_fields == "off" or (marks is None and policy.require_auto_fields == "if_marked"):
        return []
    if marks is None:
        return [
            {
                "why": "no automation thresholds",
                "detail": "the policy requires every field auto-approved, and the model's adapter has no "
                "thresholds.json (tunebridge eval --constrained --thresholds)",
            }
        ]
    held = [n for n, value in fields.items() if value not in (None, [], {}) and marks.get(n) != "auto"]
    if not held:
        return []
    return [
        {
            "why": "not auto-approved",
            "field": ", ".join(held),
            "detail": "below its field's automation threshold, without one, not found in the document, failing its "
            "check or changed by candidate ranking",
        }
    ]


def _decision(
    deps: Deps,
    state: Mapping[str, Any],
    fields: dict[str, Any],
    validation: list[dict[str, Any]],
    *,
    explain: bool = True,
) -> dict[str, Any]:
    doc_type, grounding = state["doc_type"], state.get("grounding") or {}
    confidence = state.get("confidence") or {}
    flags = []
    if doc_type == OTHER:
        flags.append({"why": "type", "detail": "not an invoice, receipt, bank statement or KYC form"})
    elif all(value in (None, "") for _, value in leaves(fields)):
        flags.append({"why": "nothing extracted", "detail": "every field is empty"})
    for issue in validation:
        if issue["severity"] == "error":
            flags.append({"why": "validation", "field": issue["field"], "detail": issue["message"]})
    for name, value in fields.items():
        c = confidence.get(name)
        if value not in (None, [], {}) and c is not None and c < deps.policy.review_below_confidence:
            flags.append({"why": "low confidence", "field": name, "detail": f"confidence {c:.2f}"})
    for path, value in leaves(fields):
        found = grounding.get(path)
        if value not in (None, "") and found is None:
            flags.append({"why": "not in document", "field": path, "detail": f"{value!r} not found in the text"})
        elif value not in (None, "") and found is not None and found["match"] == "partial":
            flags.append(
                {
                    "why": "partly in document",
                    "field": path,
                    "detail": f"{value!r} only appears inside the longer {state['text'][found['start'] : found['end']]!r}",
                }
            )
    flags += _automation_flags(deps.policy, fields, state.get("automation"))
    basis = _basis(
        deps.policy,
        doc_type,
        fields,
        confidence,
        grounding,
        state.get("text") or "",
        calibrated=bool(state.get("calibrated")),
    )
    for item in basis:
        if item["required"] and item["status"] in UNAPPROVABLE:
            flags.append(
                {
                    "why": f"required field {item['status']}",
                    "field": item["field"],
                    "detail": f"an approval rests on it: {UNAPPROVABLE[item['status']](deps.policy, item)}",
                }
            )
    ctx = rules.Context(
        doc_id=state["doc_id"], doc_type=doc_type, grounding=grounding, history=deps.store, today=deps.today
    )
    fired = rules.evaluate(deps.policy, fields, ctx)
    decision = rules.decide(fired)
    if decision == "approve" and flags:
        decision = "review"
    if deps.store is not None:
        for kind, key in rules.keys(deps.policy, fields, doc_type):
            deps.store.remember(kind, key, state["doc_id"], state["path"])
    present = [c for n, c in confidence.items() if c is not None and fields.get(n) not in (None, [], {})]
    for item in basis:
        item["rules"] = sorted(
            set(item["rules"]) | {f["rule"] for f in fired if f["evidence"].get("field") == item["field"]}
        )
    out = {
        "fired": fired,
        "flags": flags,
        "decision": decision,
        "decision_confidence": min(present, default=None),
        "basis": basis,
    }
    if explain:
        reasons = [f["reason"] for f in fired] + [
            f"{f['why']}: {f.get('field', '')} {f['detail']}".strip() for f in flags
        ]
        if decision == "approve":
            reasons = [_fact(item) for item in basis] or ["no field was required and no rule applied"]
        try:
            out["rationale"] = deps.model.explain(doc_type, decision, reasons)[:600]
        except Exception as exc:  # noqa: BLE001 - the rationale is a courtesy; the decision stands without it
            out["rationale"] = f"(no rationale: {type(exc).__name__}: {exc})"
    return out


# statuses of a required field that no other flag reports, and what to tell the reviewer
UNAPPROVABLE = {
    "missing": lambda p, item: "missing",
    "no confidence": lambda p, item: "the model gave no confidence for it",
    "uncalibrated": lambda p, item: (
        f"confidence {item['confidence']:.2f} is the model's own, not calibrated on "
        "held-out answers (tunebridge eval --constrained --calibrate)"
    ),
    "below approval confidence": lambda p, item: (
        f"confidence {item['confidence']:.2f} is under approve_min_confidence {p.approve_min_confidence:g}"
    ),
}


def _basis(
    policy: rules.Policy,
    doc_type: str,
    fields: dict[str, Any],
    confidence: dict[str, Any],
    grounding: dict[str, Any],
    text: str,
    *,
    calibrated: bool = False,
) -> list[dict[str, Any]]:
    """What a decision rests on: per decision field its value, where it is printed, its confidence,
    the rules that read it, and whether it can carry an approval (`status` "ok")."""
    required = set(policy.requires.get(doc_type, ()))
    out = []
    for name, reads in policy.decision_fields(doc_type).items():
        value = rules.get(fields, name)
        top = re.split(r"[.\[]", name, maxsplit=1)[0]
        c = confidence.get(top)
        span = grounding.get(name)
        if value in (None, "", [], {}):
            status = "missing"
        elif isinstance(value, (dict, list)):
            status = "ok"  # a list (transactions) is judged by its rules and validators, leaf by leaf
        elif span is None:
            status = "not in document"
        elif span["match"] == "partial":
            status = "partly in document"
        elif c is None:
            status = "no confidence"
        elif c < policy.review_below_confidence:
            status = "low confidence"
        elif policy.require_calibrated and not calibrated:
            status = "uncalibrated"
        elif c < policy.approve_min_confidence:
            status = "below approval confidence"
        else:
            status = "ok"
        printed = text[span["start"] : span["end"]] if span and not isinstance(value, (dict, list)) else None
        out.append(
            {
                "field": name,
                "value": value if not isinstance(value, (dict, list)) else f"{len(value)} item(s)",
                "printed": printed,
                "span": span,
                "confidence": c,
                "rules": list(reads),
                "required": name in required,
                "status": status,
            }
        )
    return out


def _fact(item: dict[str, Any]) -> str:
    where = f", printed as {item['printed']!r}" if item["printed"] else ""
    sure = f", confidence {item['confidence']:.2f}" if item["confidence"] is not None else ""
    read = f", checked by {', '.join(item['rules'])}" if item["rules"] else ""
    return f"{item['field']} = {item['value']!r}{where}{sure}{read}"


_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_corrections(fields: dict[str, Any], corrections: dict[str, Any]) -> dict[str, Any]:
    """The fields with a reviewer's corrections: keys are top-level names or paths
    (`vendor.name`, `line_items[1].amount`); a path that does not exist is an error naming it."""
    out = copy.deepcopy(fields)
    for path, value in corrections.items():
        parts = [name if name else int(index) for name, index in _PATH.findall(path)]
        if not parts:
            raise InvalidRequest(f"correction {path!r}: not a field path")
        node: Any = out
        for n, part in enumerate(parts[:-1]):
            nxt = parts[n + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise InvalidRequest(f"correction {path!r}: {part} is past the end of the list")
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise InvalidRequest(f"correction {path!r}: {part!r} is not inside an object")
                if node.get(part) is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list):
                raise InvalidRequest(f"correction {path!r}: not a list")
            if last == len(node):
                node.append(value)
            elif last < len(node):
                node[last] = value
            else:
                raise InvalidRequest(f"correction {path!r}: {last} is past the end of the list")
        else:
            if not isinstance(node, dict):
                raise InvalidRequest(f"correction {path!r}: {last!r} is not inside an object")
            node[last] = value
    return out
