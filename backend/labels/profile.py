"""Label profiles: the words and shapes of a kind of document that label rules look for, as data.

What `conventions` learns is decided by shares over the training labels; what it *tries* — the patterns a
text field's labels may never hold (`stops`: an identifier code, a phone/tax label) and the labels of a
cash-tendered and a change line (`settlement`) — depends on the documents' language and country. A
profile names them. Two ship in `profiles/`:

- `receipts` (the default): retail receipts and invoices as printed in Malaysia and Singapore —
  registration numbers such as "(273500-U)", "GST" and "H/P" labels;
- `documents`: any English business document, without a country's number shapes or tax labels.

A training run names its profile (`label_profile`: a shipped name or a JSON file of the same shape); the
name is saved with the learned conventions, so serving applies the rules with the patterns they were
learned with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from backend.errors import InvalidRequest

DEFAULT = "receipts"
SHIPPED = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class Profile:
    name: str
    stops: dict[str, re.Pattern[str]]  # a text field's labels never hold these (case-insensitive)
    tendered: frozenset[str]  # labels of a cash-tendered line, upper case
    change: frozenset[str]  # labels of a change line, upper case
    change_within: int  # lines after the tendered line where its change line may be


def shipped() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def load_profile(ref: str | None = None) -> Profile:
    """A shipped profile by name, or a profile JSON file; the default profile for None."""
    return _load(ref or DEFAULT)


@lru_cache(maxsize=16)
def _load(ref: str) -> Profile:
    path = SHIPPED / f"{ref}.json" if re.fullmatch(r"[a-z0-9_-]+", ref) else Path(ref).expanduser()
    if not path.is_file():
        raise InvalidRequest(f"label_profile: {ref!r} is neither a shipped profile {shipped()} nor a profile file")
    try:
        raw = json.loads(path.read_text())
        stops = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in raw["stops"].items()}
        return Profile(ref, stops, frozenset(s.upper() for s in raw["tendered"]),
                       frozenset(s.upper() for s in raw["change"]), int(raw["change_within"]))
    except (ValueError, KeyError, TypeError, re.error) as e:
        raise InvalidRequest(f"label_profile {path}: {type(e).__name__}: {e} (a profile has stops {{name: regex}}, "
                             "tendered and change [labels], change_within lines)") from e
