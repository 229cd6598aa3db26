"""Evaluate one or more models (the base, adapters) on the same data, side by side.

Extraction records are answered with the training prompt template and scored field by field
(`metrics.py`); chat/instruction examples get validation loss, perplexity, exact match and token-F1
against the reference answer. Generation is greedy and batched (examples sorted by length, so a
batch pads little). The output folder gets `eval.json`, `report.md` and `eval.png`
(`report.py`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch

from backend.errors import InvalidRequest
from backend.evaluation.selective import answer_pairs, curves
from backend.inference.bundle import AdapterBundle
from backend.inference.extraction import Document, extract_many
from backend.inference.pool import GenRequest, ModelPool
from backend.inference.ranking import resolve
from backend.inference.spec import ExtractionSpec
from backend.inference.stages import reranked
from backend.labels.calibration import evaluate_calibration
from backend.labels.thresholds import calibration_record
from backend.scoring.metrics import answer_metrics, parse_output, score_document, summarize
from backend.training.data import Example, load_jsonl
from backend.training.tokenize import IGNORE, encode_chat


@dataclass(frozen=True)
class Candidate:
    label: str  # "base", "receipts@2", a run folder's name
    target: AdapterBundle


def load_eval_set(path: str | Path, *, limit: int | None = None) -> tuple[list[Example], list[str]]:
    """The examples of a JSONL file (every format the trainer accepts) and the extraction schema."""
    loaded = load_jsonl(path, dedupe=False)
    if loaded.issues:
        first = loaded.issues[0]
        raise InvalidRequest(
            f"{len(loaded.issues)} invalid line(s) in {path}, first {first.file}:{first.line}: {first.message}"
        )
    examples = loaded.examples[:limit] if limit else loaded.examples
    if not examples:
        raise InvalidRequest(f"{path}: no examples to evaluate")
    return examples, loaded.schema.names if loaded.schema else []


def evaluate(
    *,
    examples: list[Example],
    schema: list[str],
    candidates: list[Candidate],
    pool: ModelPool,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    constrained: bool = False,
    rank: str | Literal[False] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """`constrained`: extraction answers are decoded under the schema (backend/inference/extraction.py)
    and scored as serving returns them (the adapter's label conventions applied, and candidate ranking
    as `rank` says: `extract_many`'s), JSON/schema validity from the model's own answer; their per-field confidences are
    scored for calibration, and kept with each answer's correctness for selective automation
    (`selective.py`: precision–coverage curves; the pairs thresholds are fitted on)."""
    extraction = [e for e in examples if e.format == "extraction"]
    answers = [e for e in examples if e.format != "extraction"]
    cap = max_new_tokens or min(512, 48 * max(1, len(schema)) + 32)
    results: dict[str, Any] = {}
    total_work = len(candidates) * len(examples)
    done = 0
    for candidate in candidates:
        started = time.perf_counter()
        entry: dict[str, Any] = {"model": candidate.target.label}

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress({"step": done, "total_steps": total_work, "candidate": candidate.label})  # noqa: B023 - called in this iteration

        if extraction:
            confidences: list[dict[str, Any]] = []
            outs: list[dict[str, Any]] = []
            if constrained:
                raws, served, spec = [], [], ExtractionSpec.from_names(schema)
                reqs = [Document(cast(dict, e.record)["text"], spec, max_new_tokens) for e in extraction]
                for start in range(0, len(reqs), batch_size):
                    for out in extract_many(
                        pool, candidate.target, reqs[start : start + batch_size], batch_size=batch_size, rank=rank
                    ):
                        raws.append(out["raw"])
                        served.append(json.dumps(out["fields"], ensure_ascii=False))
                        confidences.append(out["confidence"])
                        outs.append(out)
                    progress(len(reqs[start : start + batch_size]))
            else:
                raws = _generate(
                    pool, candidate.target, [e.messages[:-1] for e in extraction], cap, batch_size, progress
                )
            docs = [
                score_document(i, answer, cast(dict, e.record)["fields"], schema, cast(dict, e.record)["text"])
                for i, (e, answer) in enumerate(zip(extraction, served if constrained else raws))
            ]
            entry["extraction"] = summarize(docs, schema)
            entry["predictions"] = [{"origin": e.origin, "raw": raw} for e, raw in zip(extraction, raws)]
            if constrained:
                validity = [parse_output(raw, schema)[1:] for raw in raws]
                entry["extraction"]["rank"] = resolve(rank, candidate.target.learned.rules, candidate.target.label)
                entry["extraction"]["json_valid"] = sum(v[0] for v in validity) / len(raws)
                entry["extraction"]["schema_valid"] = sum(v[1] for v in validity) / len(raws)
                for p, fields in zip(entry["predictions"], served):
                    p["fields"] = json.loads(fields)
            if confidences:
                pairs = [  # decoding confidences: a value ranking chose has its candidate's share instead
                    (c[f.field], f.outcome == "correct")
                    for d, c, out in zip(docs, confidences, outs)
                    for f in d.fields
                    if c.get(f.field) is not None
                    and f.outcome in ("correct", "wrong", "extra")
                    and f.field not in reranked(out.get("ranking"))
                ]
                entry["extraction"]["calibration"] = evaluate_calibration(pairs)
                entry["extraction"]["selective"] = {
                    "pairs": answer_pairs(docs, outs),
                    # what the confidences came through: thresholds fitted on them elsewhere need it
                    "calibration": calibration_record(candidate.target.learned.calibration),
                }
                entry["extraction"]["selective"]["curves"] = curves(entry["extraction"]["selective"]["pairs"])
                for p, c in zip(entry["predictions"], confidences):
                    p["confidence"] = c
        if answers:
            cap_answers = max_new_tokens or 256
            outputs = _generate(
                pool, candidate.target, [e.messages[:-1] for e in answers], cap_answers, batch_size, progress
            )
            nll, tokens = answer_loss(pool, candidate.target, [e.messages for e in answers])
            loss = nll / max(1, tokens)
            entry["answers"] = {
                **answer_metrics([(o, e.messages[-1]["content"]) for o, e in zip(outputs, answers)]),
                "loss": loss,
                "perplexity": math.exp(min(loss, 50)),
            }
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results[candidate.label] = entry
    return {
        "examples": len(examples),
        "extraction_examples": len(extraction),
        "answer_examples": len(answers),
        "schema": schema,
        "max_new_tokens": cap,
        "candidates": results,
    }


@torch.no_grad()
def answer_loss(pool: ModelPool, target: AdapterBundle, chats: list[list[dict[str, str]]]) -> tuple[float, int]:
    """Summed negative log-likelihood of the assistant turns (the training labels), and their count."""
    total, count = 0.0, 0
    with pool.using(target) as (model, tokenizer, context):
        device = next(model.parameters()).device
        for chat in chats:
            encoded = encode_chat(tokenizer, chat)
            ids = torch.tensor([encoded.input_ids[:context]], device=device)
            gold = torch.tensor(encoded.labels[1:context], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            keep = gold != IGNORE
            total += torch.nn.functional.cross_entropy(logits[keep], gold[keep], reduction="sum").item()
            count += int(keep.sum())
    return total, count


def _generate(
    pool: ModelPool,
    target: AdapterBundle,
    prompts: list[list[dict[str, str]]],
    cap: int,
    batch_size: int,
    progress: Callable[[int], None],
) -> list[str]:
    requests = [GenRequest(tuple((m["role"], m["content"]) for m in p), max_new_tokens=cap) for p in prompts]
    order = sorted(range(len(requests)), key=lambda i: sum(len(m[1]) for m in requests[i].messages))
    out: list[str] = [""] * len(requests)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, result in zip(chunk, pool.generate(target, [requests[i] for i in chunk])):
            out[i] = result.text
        progress(len(chunk))
    return out


def write_eval(result: dict[str, Any], out_dir: Path, *, title: str) -> dict[str, Path]:
    from backend.evaluation.report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2, default=str))
    return {"eval": out_dir / "eval.json", **write_report(result, out_dir, title=title)}
