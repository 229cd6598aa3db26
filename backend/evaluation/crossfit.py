"""Automation thresholds from several evaluations: cross-fitting.

An adapter's thresholds need held-out answers — at a 0.99 target at least 268 accepted answers of a
field, all right — and every document held out of training is a label the adapter did not learn from.
Cross-fitting spends none: split the labelled documents into K parts, train an adapter on each K−1 of
them (the same recipe), evaluate each on the part it did not see (`tunebridge eval --constrained`),
and fit the thresholds of the adapter trained on all of them on the pooled answers: every labelled
document answered once, by a model that never trained on it.

Each evaluation's confidences came through its adapter's calibration, which the evaluation records;
they are carried back to raw and through the final adapter's calibration before fitting, so the
thresholds hold for the confidences the final adapter serves. The assumption: the final adapter's
confidences mean what the part adapters' meant (same recipe, a little more data) — check the
thresholds on documents none of them trained on before trusting them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import InvalidRequest
from backend.labels.calibration import Platt
from backend.labels.thresholds import Pair, recalibrated


@dataclass(frozen=True)
class Source:
    report: str  # the evaluation's eval.json
    adapter: str  # its candidate's label
    documents: int


def load_report(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """An evaluation's eval.json, given it or the folder holding it."""
    given = Path(path)
    file = given / "eval.json" if given.is_dir() else given
    if not file.is_file():
        raise InvalidRequest(f"{given}: no evaluation there (expected eval.json, as `tunebridge eval` writes it)")
    try:
        return file, json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{file}: not an evaluation report ({type(exc).__name__}: {exc})") from exc


def report_pairs(file: Path, report: dict[str, Any]) -> tuple[str, dict[str, list[Pair]], Platt | None, list[str]]:
    """The one adapter's (label, pairs, calibration they came through, document origins) of a report."""
    scored = {
        label: entry
        for label, entry in (report.get("candidates") or {}).items()
        if isinstance(entry, dict) and "selective" in (entry.get("extraction") or {})
    }
    if len(scored) != 1:
        found = ", ".join(scored) or "none"
        raise InvalidRequest(
            f"{file}: {len(scored)} adapters with constrained answers ({found}); cross-fitting takes "
            "evaluations of one adapter each (`tunebridge eval --constrained --no-base --adapter RUN`)"
        )
    [(label, entry)] = scored.items()
    selective = entry["extraction"]["selective"]
    if "calibration" not in selective:
        raise InvalidRequest(
            f"{file}: the evaluation does not record the calibration its confidences came through "
            "(made by an older tunebridge): evaluate again"
        )
    platt = Platt(**selective["calibration"]) if selective["calibration"] else None
    pairs = {f: [(c, bool(ok)) for c, ok in p] for f, p in selective["pairs"].items()}
    return label, pairs, platt, [p["origin"] for p in entry.get("predictions", [])]


def pooled_pairs(paths: list[str | Path], calibration: Platt | None) -> tuple[dict[str, list[Pair]], list[Source]]:
    """Every report's pairs as `calibration` would give their confidences, pooled per field; refused
    when two reports answer the same document or ask for different fields."""
    if not paths:
        raise InvalidRequest("no evaluations given: cross-fitting pools the answers of one or more")
    pooled: dict[str, list[Pair]] = {}
    sources: list[Source] = []
    answered: dict[str, str] = {}
    for path in paths:
        file, report = load_report(path)
        label, pairs, served, origins = report_pairs(file, report)
        if pooled and set(pairs) != set(pooled):
            raise InvalidRequest(
                f"{file}: fields {sorted(pairs)} differ from the other evaluations' {sorted(pooled)}: "
                "pool evaluations of the same schema"
            )
        for origin in origins:
            if origin in answered:
                raise InvalidRequest(
                    f"{file} and {answered[origin]} both answer the document at {origin}: each document "
                    "counts once (evaluate each adapter on the part it did not train on)"
                )
            answered[origin] = str(file)
        for field, field_pairs in recalibrated(pairs, served, calibration).items():
            pooled.setdefault(field, []).extend(field_pairs)
        sources.append(Source(str(file), label, len(origins)))
    return pooled, sources
