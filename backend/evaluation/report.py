"""`report.md` and `eval.png` from an evaluation result: candidates side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.evaluation.selective import chart, table
from backend.scoring.metrics import ERROR_CATEGORIES


def write_report(result: dict[str, Any], out_dir: Path, *, title: str) -> dict[str, Path]:
    paths = {"report": out_dir / "report.md"}
    lines = [
        f"# {title}",
        "",
        f"{result['examples']} examples ({result['extraction_examples']} extraction, "
        f"{result['answer_examples']} chat/instruction); greedy decoding, at most {result['max_new_tokens']} "
        "new tokens.",
        "",
    ]
    candidates = result["candidates"]
    extraction = {k: v["extraction"] for k, v in candidates.items() if "extraction" in v}
    if extraction:
        schema = result["schema"]
        lines += [
            "## Extraction",
            "",
            "| model | micro-F1 | precision | recall | exact match | JSON-valid | schema-valid | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, s in extraction.items():
            m = s["micro"]
            lines.append(
                f"| {label} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                f"{s['exact_match']:.3f} | {s['json_valid']:.3f} | {s['schema_valid']:.3f} | "
                f"{candidates[label]['seconds']} |"
            )
        lines += ["", "F1 per field:", "", "| model | " + " | ".join(schema) + " |", "|---|" + "---|" * len(schema)]
        for label, s in extraction.items():
            lines.append(f"| {label} | " + " | ".join(f"{s['fields'][f]['f1']:.3f}" for f in schema) + " |")
        calibrated = {k: v["calibration"] for k, v in extraction.items() if "calibration" in v}
        if calibrated:
            lines += [
                "",
                "Confidence calibration (constrained decoding; expected calibration error over the "
                "present predictions, 10 bins):",
                "",
            ]
            lines += [
                f"- {label}: ECE {c['ece']:.3f} over {c['predictions']} field predictions"
                + (
                    f"; after Platt scaling {c['ece_calibrated']:.3f} (out of fold)"
                    if c.get("ece_calibrated") is not None
                    else ""
                )
                for label, c in calibrated.items()
            ]
        selective = {k: v["selective"] for k, v in extraction.items() if "selective" in v}
        if selective:
            lines += ["", *_selective(selective)]
            paths["precision_coverage"] = chart(
                {k: v["curves"] for k, v in selective.items()}, out_dir / "precision_coverage.png"
            )
        lines += ["", "![F1 per field](eval.png)", "", "## Errors by category", ""]
        for label, s in extraction.items():
            why = [c for c in ERROR_CATEGORIES if c != "missing"]  # "missing" is an outcome column already
            lines += [
                f"### {label}",
                "",
                "| field | correct | wrong | missing | extra | " + " | ".join(why) + " |",
                "|---|---|---|---|---|" + "---|" * len(why),
            ]
            for f in schema:
                c, errs = s["fields"][f], s["errors"].get(f, {})
                lines.append(
                    f"| {f} | {c['correct']} | {c['wrong']} | {c['missing']} | {c['extra']} | "
                    + " | ".join(str(errs.get(k, 0)) for k in why)
                    + " |"
                )
            if s["worst"]:
                lines += ["", "Worst documents:", ""]
                for doc in s["worst"]:
                    wrong = "; ".join(
                        f"{f['field']}: {f['predicted']!r} (gold {f['gold']!r}, {', '.join(f['categories'])})"
                        for f in doc["fields"]
                    )
                    lines.append(f"- document {doc['index']} ({doc['errors']} wrong): {wrong}")
            lines.append("")
        paths["chart"] = _chart(extraction, schema, out_dir / "eval.png")
    answers = {k: v["answers"] for k, v in candidates.items() if "answers" in v}
    if answers:
        lines += [
            "## Chat / instruction answers",
            "",
            "| model | loss | perplexity | exact match | token-F1 |",
            "|---|---|---|---|---|",
        ]
        for label, a in answers.items():
            lines.append(
                f"| {label} | {a['loss']:.4f} | {a['perplexity']:.2f} | {a['exact_match']:.3f} | {a['token_f1']:.3f} |"
            )
        lines.append("")
    paths["report"].write_text("\n".join(lines) + "\n")
    return paths


def _selective(selective: dict[str, Any]) -> list[str]:
    """The precision–coverage table of each candidate, and the thresholds fitted on this data (or why none)."""
    lines = ["## Selective automation", ""]
    for label, s in selective.items():
        lines += [*table(label, s["curves"]), ""]
        if "thresholds" in s:
            t = s["thresholds"]
            lines += [
                f"Thresholds saved with {label} (target precision {t['target']:g}, {t['confidence']:.0%} lower "
                "bound; on this data, so no test of them):",
                "",
                "| field | threshold | answers | auto | precision | lower bound | coverage |",
                "|---|---|---|---|---|---|---|",
            ]
            for name, f in t["fields"].items():
                if f["threshold"] is None:
                    lines.append(f"| {name} | none: always review | {f['support']} | 0 | - | - | 0.00 |")
                else:
                    lines.append(
                        f"| {name} | {f['threshold']:.4f} | {f['support']} | {f['accepted']} | {f['precision']:.3f} | "
                        f"{f['lower_bound']:.3f} | {f['coverage']:.2f} |"
                    )
            lines.append("")
        if "refused" in s:
            lines += [f"Thresholds for {label} refused: {s['refused']}", ""]
    return [*lines, "![Precision against coverage](precision_coverage.png)"]


def _chart(extraction: dict[str, Any], schema: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [*schema, "micro"]
    width = 0.8 / max(1, len(extraction))
    fig, ax = plt.subplots(figsize=(1.4 * len(groups) + 2, 3.6))
    for i, (label, s) in enumerate(extraction.items()):
        values = [s["fields"][f]["f1"] for f in schema] + [s["micro"]["f1"]]
        bars = ax.bar([g + i * width for g in range(len(groups))], values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([g + width * (len(extraction) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("F1")
    ax.set_title("Extraction F1 per field")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
