"""Label conventions learned from training examples, applied to predicted values as post-normalisation.

Annotators write values their own way: a total without its currency marker and with two decimals, a
date without the time printed next to it, an address with its lines joined by spaces and its final
full stop kept. `learn` reads (document text, gold fields) pairs and records, per field, how the labels
relate to the documents: a handful of statistics that fit in a small JSON file (`conventions.json`,
saved next to an adapter). `Conventions.apply` rewrites a prediction the same way. Nothing here names
a dataset: a field's kind and every rule are decided by shares over the training labels.

Across fields, `disjoint` lists the text fields whose labels (almost) never contain another text
field's label (an address that never holds the company's name): a prediction that starts or ends with
the other field's predicted value has it cut off.

Per field:
- `kind`: "amount" when at least KIND_SHARE of the labels read as amounts (`backend.values`), else
  "date" when as many read as dates, else "text".
- amounts: `currency` (labels keep a currency marker: majority), `decimals` (the number of decimals
  that at least RULE_SHARE of the labels have, else None: as predicted), `thousands` (labels of 1000 or
  more group thousands with ",": majority), `settles` (at least RULE_SHARE of the labels of documents
  that print a tendered and a change amount equal tendered minus change, over SETTLE_SUPPORT or more
  such documents: `settlement.settled`). With `settles`, a prediction that differs from what the document
  settled by more than cash rounding is replaced by that amount, where the document prints it.
- dates: `keep_time` (labels keep a time of day: majority), `date_format` (None when most labels are
  written as the document prints them, else the strftime pattern that at least RULE_SHARE of them follow).
- text: `case` ("upper"/"lower" when at least RULE_SHARE of the labels with letters are, else
  "as_printed"), `line_joiner` (what a label spanning several document lines has in place of the line
  break: " ", ", " or "\\n"), `trailing_punct` ("keep": when the document has a full stop or comma right
  after the value, most labels include it; "strip": most leave it out; else "as_printed").
- `stops` (text fields): the label profile's stop patterns (`profile.py`) that at most DISJOINT_SHARE of
  the labels (over 20 or more) hold; in the receipts profile "code", an identifier code (digits with a
  letter suffix: a registration number "(273500-U)", "JM0325955-V") or an opening parenthesis left
  unclosed, and "contact", a phone/fax/e-mail/tax label ("TEL", "FAX", "GST"). A prediction is cut before the first stop of its field (a name run into the
  registration number printed after it, an address into the phone line); one that starts with a stop is
  left alone.
- `lines` (text fields): where the labels sit, for candidate generation (`candidates.line_candidates`):
  `within` (the first lines that hold the start of at least LINE_SHARE of the labels found as whole
  lines), `max_lines` (the run length that covers as many), `prefixes` (at least PREFIX_SHARE of the
  labels are the first words of a line, not all of it: a name printed before its registration number).
  None when fewer than half the labels are found line-aligned.
- `known` (text fields; optional, `memory=True`): the label values seen in training with how often.
  A prediction that overlaps a known value that the document itself contains (fuzzy, >= SNAP_DOC) is
  replaced by that value, spelt as the labels spell it: recurring vendors keep their labelled name and
  address even where the document's print differs from the label (typo, dropped punctuation).

- `anchors` (any kind): the words the labels stand after in their documents ("TOTAL", "GRAND TOTAL"),
  where nearly all of them stand after words other labels share (`anchors.py`); [] otherwise. An answer
  printed after none of them is never approved automatically.

With `memory=True`, `exemplars` (backend/labels/exemplars.py) also keeps each training document's head
and text labels: a text field of a document whose head matches a training document's takes that
document's label when the new document holds it (the sender's labelling, boundaries included).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from backend.labels.anchors import learn as learn_anchors
from backend.labels.exemplars import Exemplars
from backend.labels.profile import DEFAULT as DEFAULT_PROFILE
from backend.labels.profile import Profile, load_profile
from backend.labels.settlement import check_settled, settled
from backend.scoring.normalize import as_text, norm_text
from backend.values import CURRENCY_MARKER, is_absent, parse_date, parse_decimal

FILE = "conventions.json"
MEMORY_FILE = "label_memory.json"  # beside the adapter folder, not in it: it quotes training documents
KIND_SHARE = 0.9  # share of labels that must read as amounts (dates) for a field to be typed so
RULE_SHARE = 0.9  # share of labels that must follow a format for it to be imposed
SNAP_DOC = 90.0  # how well (rapidfuzz partial ratio) the document must contain a known value to snap to it
SNAP_OVERLAP = 60.0  # how much of the prediction the known value must share (token-set ratio)
LINE_SHARE = 0.95  # share of line-aligned labels that the learned line window must cover
PREFIX_SHARE = 0.1  # share of labels that are a line's first words for line prefixes to be candidates
SETTLE_SUPPORT = 20  # documents with a tendered and a change amount needed to learn `settles`
DISJOINT_SHARE = 0.02  # at most this share of labels may contain the other field's label for a disjoint rule
PUNCT = ".,;:"
DATE_FORMATS = (
    "%d/%m/%Y",
    "%d/%m/%y",
    "%d-%m-%Y",
    "%d-%m-%y",
    "%d.%m.%Y",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
)
_TIME = re.compile(r"(?i)[\sT]+\d{1,2}:\d{2}(:\d{2})?(\s*[ap]\.?m\.?)?\s*$")


@dataclass
class FieldConvention:
    kind: str = "text"
    support: int = 0  # labels it was learned from
    currency: bool = False
    decimals: int | None = None
    thousands: bool = False
    settles: bool = False
    keep_time: bool = False
    date_format: str | None = None
    case: str = "as_printed"
    line_joiner: str = " "
    stops: list[str] = field(default_factory=list)
    trailing_punct: str = "as_printed"
    lines: dict[str, Any] | None = None
    known: dict[str, int] = field(default_factory=dict)
    anchors: list[str] = field(default_factory=list)


@dataclass
class Conventions:
    fields: dict[str, FieldConvention] = field(default_factory=dict)
    examples: int = 0
    note: str = ""  # where the training labels came from (their credit, when the known values quote them)
    disjoint: dict[str, list[str]] = field(default_factory=dict)  # field: the fields its values never contain
    exemplars: Exemplars | None = None  # training heads and text labels, for recall (memory=True)
    profile: str = DEFAULT_PROFILE  # the label profile the rules were learned with (`profile.py`)

    @property
    def patterns(self) -> Profile:
        return load_profile(self.profile)

    # -- applying ---------------------------------------------------------------------------------
    def apply(
        self,
        values: dict[str, Any],
        document: str | None = None,
        *,
        memory: bool = True,
        recall: bool = True,
        settle: bool = True,
    ) -> dict[str, Any]:
        """The predicted fields rewritten to the labels' conventions (fields without one unchanged); with
        `memory` and `recall`, text fields recalled from the most similar training document (`exemplars`);
        with `settle`, amount fields that `settles` checked against what the document settled."""
        out = dict(values)
        for name, others in self.disjoint.items():
            for other in others:
                out[name] = cut_off(out.get(name), out.get(other))
        out = {
            name: self.apply_value(name, value, document, memory=memory, settle=settle) for name, value in out.items()
        }
        if memory and recall and self.exemplars is not None and document:
            for name in out:
                if name in self.fields and self.fields[name].kind == "text" and not is_absent(out[name]):
                    out[name] = self.exemplars.recall(document, name) or out[name]
        return out

    def apply_value(
        self, name: str, value: Any, document: str | None = None, *, memory: bool = True, settle: bool = True
    ) -> Any:
        conv = self.fields.get(name)
        if conv is None or is_absent(value) or isinstance(value, (dict, list, bool)):
            return value
        if conv.kind == "amount":
            if settle and conv.settles and document:
                value = check_settled(value, document, self.patterns)
            return format_amount(value, conv)
        if conv.kind == "date":
            return format_date(value, conv)
        return format_text(value, conv, document, memory=memory, profile=self.patterns)

    # -- storing ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "profile": self.profile,
            **({"note": self.note} if self.note else {}),
            "fields": {n: asdict(c) for n, c in self.fields.items()},
            "disjoint": self.disjoint,
            **({"exemplars": self.exemplars.to_json()} if self.exemplars is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Conventions:
        return cls(
            {n: FieldConvention(**c) for n, c in data.get("fields", {}).items()},
            int(data.get("examples", 0)),
            str(data.get("note", "")),
            {n: list(o) for n, o in data.get("disjoint", {}).items()},
            Exemplars.from_json(data["exemplars"]) if data.get("exemplars") else None,
            str(data.get("profile", DEFAULT_PROFILE)),
        )

    def save(self, folder: str | Path, *, memory_folder: str | Path | None = None) -> Path:
        """The rules to `folder`/conventions.json. With `memory_folder`, the label memory (label values
        and the heads of training documents: document text) goes to `memory_folder`/label_memory.json
        instead, so the adapter folder that people share holds no document text."""
        data = self.to_json()
        if memory_folder is not None:
            memory = {
                "fields": {n: {"known": c.pop("known")} for n, c in data["fields"].items() if c.get("known")},
                **({"exemplars": data.pop("exemplars")} if "exemplars" in data else {}),
            }
            for c in data["fields"].values():
                c.pop("known", None)
            if memory["fields"] or "exemplars" in memory:
                (Path(memory_folder) / MEMORY_FILE).write_text(
                    json.dumps(memory, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
                )
        path = Path(folder) / FILE
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Conventions | None:
        """The rules in `folder`, with the label memory kept beside it (its parent's label_memory.json),
        when there is one."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        memory_file = Path(folder).parent / MEMORY_FILE
        if memory_file.is_file():
            memory = json.loads(memory_file.read_text(encoding="utf-8"))
            for name, extra in memory.get("fields", {}).items():
                if name in data.get("fields", {}):
                    data["fields"][name]["known"] = extra.get("known", {})
            if memory.get("exemplars"):
                data["exemplars"] = memory["exemplars"]
        return cls.from_json(data)


# -- learning -------------------------------------------------------------------------------------
def learn(
    examples: Iterable[tuple[str, dict[str, Any]]],
    *,
    memory: bool = True,
    min_support: int = 5,
    profile: str | None = None,
) -> Conventions:
    """Conventions from (document text, gold fields) pairs. Fields with fewer than `min_support` present
    labels get none (their predictions are left alone). `profile`: the label profile whose patterns are
    tried (`profile.py`; the default one for None)."""
    patterns = load_profile(profile)
    pairs = list(examples)
    names = list(dict.fromkeys(n for _, fields in pairs for n in fields))
    learned = {}
    for name in names:
        labelled = [
            (text, as_text(f[name]))
            for text, f in pairs
            if not is_absent(f.get(name)) and not isinstance(f.get(name), (dict, list, bool))
        ]
        if len(labelled) >= min_support:
            learned[name] = learn_field(
                [v for _, v in labelled], [t for t, _ in labelled], memory=memory, profile=patterns
            )
    texts = [n for n, c in learned.items() if c.kind == "text"]
    return Conventions(
        learned,
        len(pairs),
        disjoint=learn_disjoint(pairs, texts),
        exemplars=Exemplars.learn(pairs, texts) if memory and texts else None,
        profile=patterns.name,
    )


def learn_disjoint(pairs: list[tuple[str, dict[str, Any]]], names: list[str]) -> dict[str, list[str]]:
    """For each text field, the other text fields whose labels its labels (almost) never contain."""
    rules: dict[str, list[str]] = {}
    for name in names:
        for other in names:
            both = [
                (norm_text(f[name]), norm_text(f[other]))
                for _, f in pairs
                if other != name
                and isinstance(f.get(name), str)
                and isinstance(f.get(other), str)
                and len(f[other].strip()) >= 4
            ]
            if len(both) >= 20 and sum(b in a for a, b in both) <= DISJOINT_SHARE * len(both):
                rules.setdefault(name, []).append(other)
    return rules


def cut_off(value: Any, other: Any) -> Any:
    """`value` without `other` at its start or end (a value run into the next field's text)."""
    if not isinstance(value, str) or not isinstance(other, str) or len(other.strip()) < 4:
        return value
    words, cut = value.split(), other.split()
    if len(cut) >= len(words):
        return value
    if [norm_text(w) for w in words[: len(cut)]] == [norm_text(w) for w in cut]:
        return " ".join(words[len(cut) :]).lstrip(PUNCT + " ")
    if [norm_text(w) for w in words[-len(cut) :]] == [norm_text(w) for w in cut]:
        return " ".join(words[: -len(cut)]).rstrip(", ")
    return value


def learn_field(
    labels: list[str], documents: list[str], *, memory: bool = True, profile: Profile | None = None
) -> FieldConvention:
    conv = _learn_kind(labels, documents, memory=memory, profile=profile or load_profile())
    conv.anchors = learn_anchors(labels, documents)
    return conv


def _learn_kind(labels: list[str], documents: list[str], *, memory: bool, profile: Profile) -> FieldConvention:
    n = len(labels)
    conv = FieldConvention(support=n)
    if sum(parse_decimal(v) is not None for v in labels) >= KIND_SHARE * n:
        conv.kind = "amount"
        conv.currency = sum(bool(CURRENCY_MARKER.search(v)) for v in labels) > n / 2
        places = Counter(_decimals(v) for v in labels if parse_decimal(v) is not None)
        top, count = places.most_common(1)[0]
        conv.decimals = top if count >= RULE_SHARE * n else None
        large = [v for v in labels if abs(parse_decimal(v) or Decimal(0)) >= 1000]
        conv.thousands = (
            len(large) >= 3
            and sum("," in v or " " in CURRENCY_MARKER.sub("", v).strip() for v in large) > len(large) / 2
        )
        paid = [
            (parse_decimal(v), p) for v, p in zip(labels, (settled(d, profile) for d in documents)) if p is not None
        ]
        conv.settles = len(paid) >= SETTLE_SUPPORT and sum(v == p for v, p in paid) >= RULE_SHARE * len(paid)
        return conv
    if sum(parse_date(v) is not None for v in labels) >= KIND_SHARE * n:
        conv.kind = "date"
        conv.keep_time = sum(bool(_TIME.search(v)) for v in labels) > n / 2
        printed = sum(_flat(v) in _flat(d) for v, d in zip(labels, documents))
        if printed < n / 2:
            for pattern in DATE_FORMATS:
                if sum(_strftime(parse_date(v), pattern) == _TIME.sub("", v).strip() for v in labels) >= RULE_SHARE * n:
                    conv.date_format = pattern
                    break
        return conv
    lettered = [v for v in labels if re.search(r"[^\W\d_]", v)]
    if lettered and sum(v == v.upper() for v in lettered) >= RULE_SHARE * len(lettered):
        conv.case = "upper"
    elif lettered and sum(v == v.lower() for v in lettered) >= RULE_SHARE * len(lettered):
        conv.case = "lower"
    joiners: Counter = Counter()
    kept = dropped = 0
    for label, document in zip(labels, documents):
        joiner = _joiner(label, document)
        if joiner is not None:
            joiners[joiner] += 1
        at = _find(label.rstrip(PUNCT + " "), document)
        if at is None:
            continue
        end = at[1]
        after = document[end : end + 1]
        if label.rstrip(" ")[-1:] in PUNCT and label.rstrip(PUNCT + " ") != label.rstrip(" "):
            kept += 1
        elif after and after in PUNCT:
            dropped += 1
    if joiners:
        conv.line_joiner = joiners.most_common(1)[0][0]
    if kept + dropped:
        share = kept / (kept + dropped)
        conv.trailing_punct = "keep" if share >= 0.8 else "strip" if share <= 0.2 else "as_printed"
    conv.stops = [
        name
        for name, pattern in profile.stops.items()
        if n >= 20 and sum(bool(pattern.search(v)) for v in labels) <= DISJOINT_SHARE * n
    ]
    conv.lines = learn_lines(labels, documents)
    if memory:
        conv.known = dict(Counter(re.sub(r"\s+", " ", v).strip() for v in labels).most_common())
    return conv


def line_span(label: str, document: str, *, within: int = 40, longest: int = 8) -> tuple[int, int, bool] | None:
    """Where `label` sits in `document`'s non-empty lines: (first line, lines, whether it is only the first
    words of a single line), or None when it is neither a run of whole lines nor a line's first words."""
    lines = [norm_text(line) for line in document.splitlines() if line.strip()]
    target = norm_text(label)
    if not target:
        return None
    for i in range(min(within, len(lines))):
        if lines[i].startswith(target) and lines[i] != target and lines[i][len(target) : len(target) + 1] in " (":
            return i, 1, True
        for k in range(1, longest + 1):
            if i + k > len(lines):
                break
            if norm_text(" ".join(lines[i : i + k])) == target:
                return i, k, False
    return None


def learn_lines(labels: list[str], documents: list[str]) -> dict[str, Any] | None:
    """The line window that holds the labels (see the module's `lines`), or None."""
    spans = [s for s in (line_span(v, d) for v, d in zip(labels, documents)) if s is not None]
    if len(spans) < len(labels) / 2:
        return None

    def covering(values: list[int]) -> int:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, math.ceil(LINE_SHARE * len(ordered)) - 1)]

    return {
        "within": covering([s[0] for s in spans]) + 1,
        "max_lines": covering([s[1] for s in spans]),
        "prefixes": sum(s[2] for s in spans) >= PREFIX_SHARE * len(labels),
    }


def _decimals(value: str) -> int:
    """Decimal places as written ("9.00": 2, "1,250": 0)."""
    amount = parse_decimal(value)
    assert amount is not None, value  # called on values that read as amounts
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def _find(value: str, document: str) -> tuple[int, int] | None:
    """The span of `value`'s words in `document` (case-insensitive; between words any whitespace, line
    breaks included, with any punctuation around it), or None."""
    words = [w.strip(PUNCT) for w in value.split()]
    words = [w for w in words if w]
    if not words:
        return None
    gap = rf"[{re.escape(PUNCT)}]*\s[\s{re.escape(PUNCT)}]*"
    m = re.search(gap.join(re.escape(w) for w in words), document, flags=re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def _joiner(label: str, document: str) -> str | None:
    """What the label has where the document breaks a line inside the value, when it spans lines (a
    full stop or comma ending the line may be dropped with the break)."""
    lines = [line.split() for line in document.splitlines() if line.strip()]
    for first, second in zip(lines, lines[1:]):
        head, tail = " ".join(first[-2:]), " ".join(second[:2]).rstrip(PUNCT)
        for joiner in (", ", " ", "\n", ""):
            if joiner == ", " and head.endswith(","):
                continue
            if f"{head}{joiner}{tail}" in label or f"{head.rstrip(PUNCT)}{joiner}{tail}" in label:
                return joiner
    return None


def _strftime(value, pattern: str) -> str | None:
    return value.strftime(pattern).upper() if value is not None else None


# -- formatting -----------------------------------------------------------------------------------
def format_amount(value: Any, conv: FieldConvention) -> Any:
    number = parse_decimal(value)
    if number is None:
        return value
    text = as_text(value).strip()
    if conv.decimals is not None:
        number = number.quantize(Decimal(1).scaleb(-conv.decimals), rounding=ROUND_HALF_UP)
        digits = f"{number:,f}" if conv.thousands else f"{number:f}"
    elif isinstance(value, (int, float)):
        digits = f"{number:,}" if conv.thousands else str(number)
    else:
        digits = CURRENCY_MARKER.sub("", text).strip()
        if not conv.thousands and parse_decimal(digits.replace(",", "")) == number:
            digits = digits.replace(",", "")
    if conv.currency:
        marker = CURRENCY_MARKER.search(text)
        return f"{marker.group()}{digits}" if marker else digits
    return digits


def format_date(value: Any, conv: FieldConvention) -> Any:
    text = re.sub(r"\s+", " ", as_text(value)).strip()
    if not conv.keep_time:
        text = _TIME.sub("", text).strip()
    if conv.date_format:
        parsed = parse_date(text)
        if parsed is not None:
            return _strftime(parsed, conv.date_format)
    return text


def format_text(
    value: Any,
    conv: FieldConvention,
    document: str | None = None,
    *,
    memory: bool = True,
    profile: Profile | None = None,
) -> Any:
    text = as_text(value).strip()
    text = re.sub(r"[ \t]*\n\s*", conv.line_joiner, text) if conv.line_joiner != "\n" else text
    text = re.sub(r"[ \t]+", " ", text).strip()
    if conv.stops:
        text = cut_at_stop(text, conv.stops, profile)
    if memory and conv.known and document:
        snapped = snap(text, conv.known, document)
        if snapped is not None:
            return snapped
    if conv.trailing_punct == "strip":
        text = text.rstrip(PUNCT + " ")
    elif conv.trailing_punct == "keep" and document and text[-1:] not in PUNCT:
        at = _find(text, document)
        if at is not None and document[at[1] : at[1] + 1] in PUNCT and document[at[1] : at[1] + 1]:
            text += document[at[1]]
    if conv.case == "upper":
        text = text.upper()
    elif conv.case == "lower":
        text = text.lower()
    return text


def cut_at_stop(text: str, stops: list[str], profile: Profile | None = None) -> str:
    """`text` up to its first match of these stop patterns (of `profile`, the default one for None), unless
    that is where it starts (punctuation before the cut stays: whether labels keep it is
    `trailing_punct`'s business)."""
    patterns = (profile or load_profile()).stops
    starts = [
        m.start() for m in (patterns[name].search(text) for name in stops if name in patterns) if m and m.start() > 0
    ]
    return text[: min(starts)].rstrip(" -(") or text if starts else text


def snap(prediction: str, known: dict[str, int], document: str) -> str | None:
    """The known label value this prediction stands for in this document, or None.

    A prediction that the document contains word for word is trusted: it is only extended to a known value
    that contains it (a value cut short). Any other prediction (a misspelt copy, a value run into the next
    line's text) is replaced by the known value that the document contains (partial ratio >= SNAP_DOC),
    that shares most of the prediction's words (token-set ratio >= SNAP_OVERLAP), and that is closest to it
    (ties: the most frequent, then the longest)."""
    from rapidfuzz import fuzz

    p = norm_text(prediction)
    doc = norm_text(document.replace("\n", " "))
    on_page = p in doc
    best, best_key = None, None
    for value, count in known.items():
        v = norm_text(value)
        if v == p:
            return None
        if len(v) < 4 or (on_page and p not in v):
            continue
        if fuzz.token_set_ratio(p, v) < SNAP_OVERLAP or fuzz.partial_ratio(v, doc) < SNAP_DOC:
            continue
        key = (fuzz.ratio(p, v), count, len(v))
        if best_key is None or key > best_key:
            best, best_key = value, key
    return best
