"""Selective automation in an evaluation: how precise the answers a threshold lets through are, and how
many it lets through — per field and over all fields — from scored constrained answers.

Each field of each document is one answer: approvable when it has a confidence and a value found in
the document that passes its check and that candidate ranking did not change (`inference.stages.
approvable`, the rule `mark` applies), right when scoring says `correct`. `curves` gives the
precision–coverage curve of a falling threshold (per field, and one threshold over all fields);
`backend/labels/thresholds.py` fits the per-field thresholds stored with an adapter from the same pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.inference.stages import approvable, reranked
from backend.labels.thresholds import Pair, curve
from backend.scoring.metrics import DocumentResult

LEVELS = (0.9, 0.95, 0.98, 0.99, 1.0)  # precisions the report reads the curves at


def answer_pairs(docs: list[DocumentResult], answers: list[dict[str, Any]]) -> dict[str, list[Pair]]:
    """Per field, (confidence or None when the answer cannot be approved, right?) for every document.
    `answers`: what extraction returned per document (fields, confidence, grounding, checks, and
    `ranking` — or `reranked`, the fields ranking changed, as kept answers hold it)."""
    pairs: dict[str, list[Pair]] = {}
    for doc, answer in zip(docs, answers):
        fields, confidence = answer["fields"], answer.get("confidence") or {}
        for f in doc.fields:
            c = confidence.get(f.field)
            grounding, checks = answer.get("grounding") or {}, answer.get("checks") or {}
            ranked = set(answer.get("reranked") or ()) | reranked(answer.get("ranking"))
            ok = c is not None and approvable(f.field, fields, grounding, checks, ranked)
            pairs.setdefault(f.field, []).append((c if ok else None, f.outcome == "correct"))
    return pairs


def curves(pairs: dict[str, list[Pair]]) -> dict[str, Any]:
    """The precision–coverage curve of each field and of one threshold over every field, with the
    highest coverage each reaches at LEVELS of precision (on these answers: a description, not a
    guarantee — fitted thresholds use a lower bound)."""
    pooled = [p for field_pairs in pairs.values() for p in field_pairs]
    out: dict[str, dict[str, Any]] = {f: {"answers": len(p), "curve": curve(p)} for f, p in pairs.items()}
    out["overall"] = {"answers": len(pooled), "curve": curve(pooled)}
    for entry in out.values():
        entry["coverage_at"] = {
            f"{level:g}": max((pt["coverage"] for pt in entry["curve"] if pt["precision"] >= level), default=0.0)
            for level in LEVELS
        }
    return out


def table(label: str, summary: dict[str, Any]) -> list[str]:
    """Markdown: per field, the share of answers auto-approvable at each precision level."""
    lines = [
        f"{label} — highest share of answers auto-approved at each precision (on these answers):",
        "",
        "| field | answers | " + " | ".join(f"precision ≥ {level:g}" for level in LEVELS) + " |",
        "|---|---|" + "---|" * len(LEVELS),
    ]
    for name, entry in summary.items():
        cells = " | ".join(f"{entry['coverage_at'][f'{level:g}']:.2f}" for level in LEVELS)
        lines.append(f"| {name} | {entry['answers']} | {cells} |")
    return lines


def chart(summaries: dict[str, dict[str, Any]], path: Path, *, marks: dict[str, dict[str, Any]] | None = None) -> Path:
    """Precision against coverage, one panel per candidate (`summaries`: label → `curves`); `marks`:
    label → {field or "overall": {"coverage", "precision"}} operating points to draw on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(5.2 * len(summaries), 4), squeeze=False)
    for ax, (label, summary) in zip(axes[0], summaries.items()):
        for name, entry in summary.items():
            pts = entry["curve"]
            ax.plot(
                [p["coverage"] for p in pts],
                [p["precision"] for p in pts],
                label=name,
                linewidth=2.2 if name == "overall" else 1.2,
                color="black" if name == "overall" else None,
            )
        for name, point in ((marks or {}).get(label) or {}).items():
            if point.get("precision") is not None:
                ax.scatter([point["coverage"]], [point["precision"]], marker="o", s=28, zorder=3)
                ax.annotate(
                    name,
                    (point["coverage"], point["precision"]),
                    fontsize=7,
                    xytext=(3, -9),
                    textcoords="offset points",
                )
        ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.01)
        ax.set_xlabel("coverage (share of answers auto-approved)")
        ax.set_ylabel("precision of the auto-approved")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
