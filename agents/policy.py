"""Decision rules: a readable YAML policy evaluated on the validated record. Rules decide; the model
only explains afterwards, from the decision and its reasons — never from the document's text — so
nothing written in a document can change a decision (prompt injection).

A policy file (`agents/policies/default.yaml` is the default):

    review_below_confidence: 0.7          # a present field under this confidence → review
    approve_min_confidence: 0.95          # an approval needs each required field at least this sure
    require_calibrated: true              # ... and its confidence calibrated on held-out answers
    require_auto_fields: if_marked        # every given field marked `auto` by the adapter's thresholds
    rules:
      - id: high_value
        applies_to: [invoice]
        check: amount_above                # one of CHECKS below
        params: {field: total, limit: 10000}
        outcome: review                    # review | reject
        reason: "total {value} is above {limit}"   # filled from params and the evidence

    requires:                             # the fields a decision rests on, per document type
      invoice: [vendor.name, invoice_number, total, due_date]

Approval needs evidence, not the absence of objections: a document is approved only when every field
its type `requires` is present, found whole in the document (an amount of the same value, a code as a
whole token), at or above `approve_min_confidence` (0.95) on confidences *calibrated* on held-out
answers (the adapter's calibration.json, written by `tunebridge eval --constrained --calibrate`;
`require_calibrated: false` trusts raw token probabilities, which a fine-tuned small model gives
wrong values at 0.98), and every rule that applies could be evaluated. A rule whose inputs are missing or unreadable is a reason for review, shown as such.
`require_auto_fields` reads the adapter's automation marks (per field `auto` or `review`, from the
per-field thresholds in its thresholds.json: `tunebridge eval --constrained --thresholds`): with
`true` a document goes to review unless every given field is marked `auto` — and always when the
adapter has no thresholds; with `if_marked` the same where the extraction carries marks, and a
document from an adapter without thresholds is decided as before; with `false` (the default when the
key is absent) the marks are ignored.
Otherwise the decision is the most severe outcome among the rules that fired, validation errors
(review), low-confidence or ungrounded fields (review) and an unknown document type (review). Each
reason carries its evidence: the field, the value, and where it is in the document.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from backend.errors import InvalidRequest
from backend.values import is_absent, parse_amount, parse_date

DEFAULT_POLICY = Path(__file__).parent / "policies" / "default.yaml"
SEVERITY = {"approve": 0, "review": 1, "reject": 2}
AUTO_MODES: dict[Any, str] = {False: "off", True: "on", "if_marked": "if_marked"}  # require_auto_fields
# What a decision rests on when a policy names nothing for a type: an approval needs these in evidence.
DEFAULT_REQUIRES: dict[str, tuple[str, ...]] = {
    "invoice": ("vendor.name", "invoice_number", "total", "due_date"),
    "receipt": ("company", "date", "total"),
    "bank_statement": ("opening_balance", "closing_balance"),
    "kyc": ("full_name", "id_number", "loan_amount", "annual_income", "iban"),
}


class History(Protocol):
    """What earlier documents said (duplicate detection): `seen` returns the ids of earlier documents
    with the same key, other than `doc_id`."""

    def seen(self, kind: str, key: str, doc_id: str) -> list[str]: ...


@dataclass(frozen=True)
class Rule:
    id: str
    check: str
    outcome: str
    applies_to: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def reads(self) -> tuple[str, ...]:
        """The field paths this rule's check reads."""
        if self.check in ("large_deposit", "structuring"):
            return ("transactions",)
        named = [self.params.get(k) for k in ("field", "numerator", "denominator")] + list(
            self.params.get("fields") or []
        )
        return tuple(str(n) for n in named if n)


@dataclass(frozen=True)
class Unevaluable:
    """A check that could not run: its inputs are missing or unreadable (a reason for review)."""

    field: str
    why: str


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    review_below_confidence: float = 0.7
    source: str = ""
    requires: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_REQUIRES))
    approve_min_confidence: float = 0.95  # each required field's confidence, for an approval
    require_calibrated: bool = True  # only confidences calibrated on held-out answers can approve
    require_auto_fields: str = "off"  # off | on | if_marked: every given field marked `auto` (see above)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        path = Path(path or DEFAULT_POLICY)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"policy {path}: cannot read it: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise InvalidRequest(f"policy {path}: expected a mapping with a 'rules' list")
        rules = []
        for n, item in enumerate(data["rules"]):
            where = f"policy {path}, rule {n + 1}"
            if not isinstance(item, dict):
                raise InvalidRequest(f"{where}: expected a mapping, got {item!r}")
            unknown = set(item) - {"id", "check", "outcome", "applies_to", "params", "reason"}
            if unknown:
                raise InvalidRequest(f"{where}: unknown keys {sorted(unknown)}")
            if item.get("check") not in CHECKS:
                raise InvalidRequest(f"{where}: check {item.get('check')!r} is not one of {sorted(CHECKS)}")
            if item.get("outcome") not in ("review", "reject"):
                raise InvalidRequest(f"{where}: outcome must be 'review' or 'reject', got {item.get('outcome')!r}")
            rules.append(
                Rule(
                    id=str(item.get("id") or f"rule-{n + 1}"),
                    check=item["check"],
                    outcome=item["outcome"],
                    applies_to=tuple(item.get("applies_to") or ()),
                    params=dict(item.get("params") or {}),
                    reason=str(item.get("reason") or ""),
                )
            )
        requires = data.get("requires", DEFAULT_REQUIRES)
        if not isinstance(requires, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and all(isinstance(f, str) for f in v)
            for k, v in requires.items()
        ):
            raise InvalidRequest(
                f"policy {path}: 'requires' maps document types to lists of field paths, got {requires!r}"
            )
        thresholds = {}
        for key, low, high in (("review_below_confidence", 0.0, 1.0), ("approve_min_confidence", 0.0, 1.0)):
            value = data.get(key, 0.7 if key == "review_below_confidence" else 0.95)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise InvalidRequest(f"policy {path}: {key}: got {value!r}, expected a number in [{low:g}, {high:g}]")
            thresholds[key] = float(value)
        calibrated = data.get("require_calibrated", True)
        if not isinstance(calibrated, bool):
            raise InvalidRequest(f"policy {path}: require_calibrated: got {calibrated!r}, expected true or false")
        auto = data.get("require_auto_fields", False)
        if not isinstance(auto, (bool, str)) or auto not in AUTO_MODES:
            raise InvalidRequest(f"policy {path}: require_auto_fields: got {auto!r}, expected true, false or if_marked")
        return cls(
            tuple(rules),
            thresholds["review_below_confidence"],
            str(path),
            {k: tuple(v) for k, v in requires.items()},
            thresholds["approve_min_confidence"],
            calibrated,
            AUTO_MODES[auto],
        )

    def decision_fields(self, doc_type: str) -> dict[str, list[str]]:
        """The fields a decision on this type rests on: each required one, and each one a rule reads,
        with the ids of the rules that read it."""
        out: dict[str, list[str]] = {f: [] for f in self.requires.get(doc_type, ())}
        for rule in self.rules:
            if not rule.applies_to or doc_type in rule.applies_to:
                for name in rule.reads():
                    out.setdefault(name, []).append(rule.id)
        return out


@dataclass
class Context:
    doc_id: str
    doc_type: str
    grounding: dict[str, Any]
    history: History | None = None
    today: dt.date = field(default_factory=dt.date.today)


def evaluate(policy: Policy, record: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """The rules that fired, each with its outcome, reason and evidence."""
    fired = []
    for rule in policy.rules:
        if rule.applies_to and ctx.doc_type not in rule.applies_to:
            continue
        for evidence in CHECKS[rule.check](record, rule.params, ctx):
            if isinstance(evidence, Unevaluable):
                fired.append(
                    {
                        "rule": rule.id,
                        "outcome": "review",
                        "unevaluable": True,
                        "reason": f"rule {rule.id} could not be evaluated: {evidence.why}",
                        "evidence": {"field": evidence.field, "span": ctx.grounding.get(evidence.field)},
                    }
                )
                continue
            values = {**rule.params, **evidence}
            try:
                reason = rule.reason.format(**values) if rule.reason else f"{rule.id}: {evidence}"
            except (KeyError, IndexError, ValueError):
                reason = f"{rule.reason} ({evidence})"
            span = ctx.grounding.get(evidence.get("field", ""))
            fired.append(
                {"rule": rule.id, "outcome": rule.outcome, "reason": reason, "evidence": {**evidence, "span": span}}
            )
    return fired


def keys(policy: Policy, record: dict[str, Any], doc_type: str) -> list[tuple[str, str]]:
    """What this record adds to the history: the keys its duplicate rules compare."""
    out = []
    for rule in policy.rules:
        if rule.check == "duplicate" and (not rule.applies_to or doc_type in rule.applies_to):
            key = _key(record, rule.params["fields"])
            if key is not None:
                out.append((doc_type, key))
    return out


def _key(record: dict[str, Any], paths: list[str]) -> str | None:
    parts = [get(record, f) for f in paths]
    if any(is_absent(p) for p in parts):
        return None
    return " | ".join(str(p).casefold().strip() for p in parts)


def decide(fired: list[dict[str, Any]]) -> str:
    return max((f["outcome"] for f in fired), key=SEVERITY.__getitem__, default="approve")


# -- checks: (record, params, context) -> evidence dicts, one per finding --------------------------------
def get(record: Any, path: str) -> Any:
    """A value by dotted path (`vendor.name`); None when any step is missing."""
    for part in path.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def _amount(record, name: str) -> float | Unevaluable:
    raw = get(record, name)
    if is_absent(raw):
        return Unevaluable(name, f"{name} is missing")
    value = parse_amount(raw)
    return Unevaluable(name, f"{name} {raw!r} is not an amount") if value is None else value


def _amount_above(record, params, ctx):
    value = _amount(record, params["field"])
    if isinstance(value, Unevaluable):
        yield value
    elif value > float(params["limit"]):
        yield {"field": params["field"], "value": value}


def _not_in_list(record, params, ctx):
    value = get(record, params["field"])
    allowed = {str(v).casefold().strip() for v in params.get("list", [])}
    if is_absent(value):
        yield Unevaluable(params["field"], f"{params['field']} is missing")
    elif str(value).casefold().strip() not in allowed:
        yield {"field": params["field"], "value": value}


def _duplicate(record, params, ctx):
    key = _key(record, params["fields"])
    if ctx.history is None:
        return
    if key is None:
        absent = [f for f in params["fields"] if is_absent(get(record, f))]
        yield Unevaluable(absent[0], f"{', '.join(absent)} missing: earlier documents cannot be compared")
        return
    earlier = ctx.history.seen(ctx.doc_type, key, ctx.doc_id)
    if earlier:
        yield {"field": params["fields"][-1], "value": get(record, params["fields"][-1]), "earlier": ", ".join(earlier)}


def _date_passed(record, params, ctx):
    raw = get(record, params["field"])
    when = parse_date(raw)
    if when is None:
        why = "is missing" if is_absent(raw) else f"{raw!r} is not a date"
        yield Unevaluable(params["field"], f"{params['field']} {why}")
    elif when < ctx.today - dt.timedelta(days=int(params.get("grace_days", 0))):
        yield {"field": params["field"], "value": raw, "days": (ctx.today - when).days}


def _ratio_above(record, params, ctx):
    top, bottom = _amount(record, params["numerator"]), _amount(record, params["denominator"])
    if isinstance(top, Unevaluable) or isinstance(bottom, Unevaluable):
        yield top if isinstance(top, Unevaluable) else bottom
        return
    if not bottom:
        yield Unevaluable(params["denominator"], f"{params['denominator']} is zero")
    elif top / bottom > float(params["limit"]):
        yield {"field": params["numerator"], "value": top, "ratio": round(top / bottom, 2)}


def _transactions(record) -> list[tuple[int, dict[str, Any], float, dt.date | None]]:
    out = []
    for i, t in enumerate(record.get("transactions") or []):
        amount = parse_amount(t.get("amount")) if isinstance(t, dict) else None
        if amount is not None:
            out.append((i, t, amount, parse_date(t.get("date"))))
    return out


def _large_deposit(record, params, ctx):
    words = [w.casefold() for w in params.get("description_contains", [])]
    for i, t, amount, _ in _transactions(record):
        text = str(t.get("description") or "").casefold()
        if amount >= float(params["limit"]) and (not words or any(w in text for w in words)):
            yield {"field": f"transactions[{i}].amount", "value": amount, "description": t.get("description")}


def _structuring(record, params, ctx):
    """Several deposits just under a reporting threshold within a few days."""
    limit, band = float(params["threshold"]), float(params.get("band", 0.1))
    near = [
        (i, amount, day)
        for i, _, amount, day in _transactions(record)
        if limit * (1 - band) <= amount < limit and day is not None
    ]
    near.sort(key=lambda x: x[2])
    window, count = dt.timedelta(days=int(params.get("days", 7))), int(params.get("count", 3))
    for start in range(len(near)):
        group = [x for x in near[start:] if x[2] - near[start][2] <= window]
        if len(group) >= count:
            yield {
                "field": f"transactions[{group[0][0]}].amount",
                "value": [g[1] for g in group],
                "count": len(group),
                "total": round(sum(g[1] for g in group), 2),
                "transactions": [g[0] for g in group],
            }
            return


CHECKS: dict[str, Callable[..., Any]] = {
    "amount_above": _amount_above,
    "not_in_list": _not_in_list,
    "duplicate": _duplicate,
    "date_passed": _date_passed,
    "ratio_above": _ratio_above,
    "large_deposit": _large_deposit,
    "structuring": _structuring,
}
