"""Constrained extraction: the training prompt, decoding under the JSON Schema, then fields, per-field
confidence, grounding spans and the fields that need a human look.

Documents are decoded in batches (`extract_many`); the prompt part they share (system prompt and
field list) is computed once per model state and read from the pool's prefix cache. The API
(`/v1/extract`, batched across concurrent requests by the batcher) and evaluation
(`tunebridge eval --constrained`) both end here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from backend.errors import InvalidRequest
from backend.inference.bundle import AdapterBundle
from backend.inference.constrained import bound_schema, field_confidence, grammar, schema_of
from backend.inference.decoding import common_prefix, constrained_batch
from backend.inference.grounding import ground
from backend.inference.pool import ModelPool, stop_ids
from backend.inference.ranking import rank_document, resolve, to_score
from backend.inference.spans import SpanCopy, span_grammar
from backend.inference.spec import ExtractionSpec
from backend.inference.stages import (
    apply_label_rules,
    calibrate,
    check,
    mark,
    reranked,
    take_ranked,
    to_review,
)
from backend.prompts import parse_answer

MIN_PREFIX = 8  # shorter shared prefixes are not worth a cache entry
# Copied guesses per pass (decoding.constrained_batch). Measured with benchmarks/extract_latency.py on 50
# SROIE receipts (2 cores, bf16): alone, 0 → 0.25 docs/s, 8 → 0.55, 12 → 0.58-0.63; in batches of 8
# wider steps cost real compute: 0 → 0.73, 2 → 0.74, 4 → 0.81, 8 → 0.75.
DRAFT_ALONE, DRAFT_BATCHED = 12, 4


@dataclass(frozen=True)
class Document:
    text: str
    spec: ExtractionSpec  # what to extract (`spec.py`): fields, bounded schema, grammar, prompt
    max_new_tokens: int | None = None
    span_copy: SpanCopy | None = None  # fields decoded as spans of the text (spans.py); None: extract_many's
    rank: str | Literal[False] | None = None  # candidate ranking mode (ranking.py); False: none; None: extract_many's
    gone: Callable[[], bool] | None = None  # whether its caller has left (decoding then drops it from its batch)


def extract(
    pool: ModelPool,
    target: AdapterBundle,
    *,
    text: str,
    spec: ExtractionSpec,
    max_new_tokens: int | None = None,
    limit: int = 4096,
    review_confidence: float = 0.7,
    span_copy: SpanCopy = False,
    rank: str | Literal[False] | None = None,
) -> dict[str, Any]:
    return extract_many(
        pool,
        target,
        [Document(text, spec, max_new_tokens, span_copy, rank)],
        limit=limit,
        review_confidence=review_confidence,
    )[0]


def extract_many(
    pool: ModelPool,
    target: AdapterBundle,
    docs: list[Document],
    *,
    limit: int = 4096,
    review_confidence: float = 0.7,
    batch_size: int = 8,
    prefix_cache: bool = True,
    jump_forward: bool = True,
    draft: int | None = None,
    span_copy: SpanCopy = False,
    conventions: bool = True,
    rank: str | Literal[False] | None = None,
) -> list[dict[str, Any]]:
    """One result per document, in order. Raises ValueError naming the document whose prompt and answer
    would not fit the model's context. `span_copy` (for documents that do not set their own): the
    string fields whose values may only be substrings of the document's text (`spans.py`): False,
    True (every plain string field) or their names. `conventions`: rewrite the answers the way the
    adapter's training labels are written (its conventions.json, learned by the trainer), the model's
    own answer kept as `model_fields`. `rank` (for documents that do not set their own): after decoding,
    let the model choose among the document's candidate spans where the adapter's conventions say what a
    field looks like (`ranking.py`: "typed", "text"; None: "typed" where the adapter has conventions and
    `conventions` is on; False: no ranking); each choice is in `ranking`. A named mode needs the adapter's conventions.json:
    InvalidRequest without it."""
    results: list[dict[str, Any] | None] = [None] * len(docs)
    rules = target.learned.rules
    asked = [rank if doc.rank is None else doc.rank for doc in docs]  # None: the default, by the conventions used
    modes = [resolve(m, rules if conventions or m is not None else None, target.label) for m in asked]
    with pool.using(target) as (model, tokenizer, context):
        device = next(model.parameters()).device
        prompts, grammars, caps = [], [], []
        for n, doc in enumerate(docs):
            spec = doc.spec
            cap = min(doc.max_new_tokens or spec.budget, limit)
            ids = encode_chat(tokenizer, spec.messages(doc.text))
            if len(ids) + cap > context:
                where = f"document {n}: " if len(docs) > 1 else ""
                raise InvalidRequest(
                    f"{where}prompt of {len(ids)} tokens + {cap} answer tokens exceed the model's "
                    f"context of {context}; shorten the document"
                )
            prompts.append(ids)
            copy = span_copy if doc.span_copy is None else doc.span_copy
            grammars.append((span_grammar(spec.bounded, doc.text, copy) if copy else None) or spec.grammar)
            caps.append(cap)
        order = sorted(range(len(docs)), key=lambda i: len(prompts[i]))  # similar lengths pad least
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            prefix = None
            if prefix_cache:
                shared = _shared_prefix(tokenizer, [docs[i] for i in chunk], [prompts[i] for i in chunk])
                if len(shared) >= MIN_PREFIX:
                    prefix = (shared, pool.prefixes.get(model, repr(target), shared, device))
            decoded = constrained_batch(
                model,
                tokenizer,
                [prompts[i] for i in chunk],
                [grammars[i] for i in chunk],
                gone=[docs[i].gone for i in chunk],
                max_new_tokens=[caps[i] for i in chunk],
                device=device,
                eos_ids=stop_ids(model, tokenizer),
                jump_forward=jump_forward,
                prefix=prefix,
                draft=(DRAFT_ALONE if len(chunk) == 1 else DRAFT_BATCHED) if draft is None else draft,
                keep_prompt=_scored_later([docs[i] for i in chunk], [modes[i] for i in chunk], rules),
            )
            for i, result in zip(chunk, decoded):
                ranking = None
                if row_mode := modes[i]:
                    spec = docs[i].spec
                    ranking = rank_document(
                        model,
                        tokenizer,
                        prompts[i],
                        spec.names,
                        parse_answer(result.text, spec.fields).fields,
                        docs[i].text,
                        rules,
                        row_mode,
                        device,
                        only=spec.strings,
                        prompt=result.prompt,
                    )
                result.prompt = None  # its cache is freed with the batch's
                results[i] = _record(target, docs[i], result, review_confidence, conventions, ranking)
    return [r for r in results if r is not None]


def constrained_chat(
    pool: ModelPool,
    target: AdapterBundle,
    messages: list[dict[str, str]],
    json_schema: dict[str, Any],
    *,
    max_new_tokens: int | None = None,
    limit: int = 4096,
) -> dict[str, Any]:
    """A chat answer decoded under a JSON Schema (OpenAI's `response_format`): text, finish reason, usage."""
    bounded, budget = bound_schema(schema_of(json_schema))
    open_ended = _open_ended(bounded)
    if max_new_tokens is not None and max_new_tokens < budget and not open_ended:
        raise InvalidRequest(
            f"max_tokens: got {max_new_tokens}, but an answer under this schema can take up to {budget} "
            "tokens and would be cut off before its JSON closes: raise max_tokens (or leave it out), or "
            "bound the schema more tightly (maxLength, maxItems, enum)"
        )
    cap = min(max_new_tokens or budget, limit)
    with pool.using(target) as (model, tokenizer, context):
        ids = encode_chat(tokenizer, messages)
        if len(ids) + cap > context:
            raise InvalidRequest(
                f"prompt of {len(ids)} tokens + {cap} answer tokens exceed the model's context of "
                f"{context}; shorten the messages or max_tokens"
            )
        result = constrained_batch(
            model,
            tokenizer,
            [ids],
            [grammar(bounded)],
            max_new_tokens=cap,
            device=next(model.parameters()).device,
            eos_ids=stop_ids(model, tokenizer),
            draft=DRAFT_ALONE,
        )[0]
    if result.finish_reason == "length" and not _parses(result.text):  # only an open-ended object gets here
        raise InvalidRequest(f"max_tokens: the answer reached {cap} tokens before its JSON closed; raise max_tokens")
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": len(ids),
        "completion_tokens": len(result.tokens),
    }


def _open_ended(schema: Any) -> bool:
    """Whether a bounded schema still lets an answer grow without end (an object open to any key)."""
    if isinstance(schema, dict):
        if schema.get("additionalProperties") not in (None, False):
            return True
        return any(_open_ended(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_open_ended(v) for v in schema)
    return False


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _record(
    target: AdapterBundle,
    doc: Document,
    result,
    review_confidence: float,
    conventions: bool = True,
    ranking: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The stages after decoding (`stages.py`), and the record of what each gave."""
    parsed = parse_answer(result.text, doc.spec.fields)
    raw_confidence = field_confidence(result, doc.spec.names)
    adapter = target.learned
    confidence = calibrate(raw_confidence, adapter.calibration)
    chosen, confidence = take_ranked(parsed.fields, confidence, ranking)
    rules = adapter.rules if conventions else None
    fields = apply_label_rules(chosen, doc.text, rules)
    grounding = ground(fields, doc.text)
    checks = check(fields, rules, doc.text)
    ranked = reranked(ranking)
    marks = mark(doc.spec.names, fields, confidence, grounding, adapter.thresholds, checks, ranked)
    review = to_review(doc.spec.names, fields, confidence, grounding, review_confidence, marks, checks, ranked)
    return {
        "model": target.label,
        "fields": fields,
        "confidence": confidence,
        **({"model_fields": parsed.fields} if rules is not None or ranking else {}),
        **({"ranking": ranking} if ranking is not None else {}),
        "confidence_raw": raw_confidence,
        "calibrated": bool(adapter.calibration and adapter.calibration.fitted),
        "grounding": grounding,
        "checks": checks,
        "review": review,
        **(
            {"automation": marks, "target_precision": adapter.thresholds.target}
            if marks is not None and adapter.thresholds is not None
            else {}
        ),
        "valid_json": parsed.valid_json,
        "missing": parsed.missing,
        "extra": parsed.extra,
        "raw": result.text,
        "finish_reason": result.finish_reason,
        "constrained": True,
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "cached_prompt_tokens": result.cached_prompt_tokens,
            "completion_tokens": len(result.tokens),
            "forced_tokens": result.forced,
            "forward_passes": result.forward_passes,
            "drafted_tokens": result.extra.get("drafted", 0),
            "accepted_draft_tokens": result.extra.get("accepted", 0),
        },
    }


def encode_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt, ready for the assistant's answer."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _scored_later(docs: list[Document], modes: list[str | None], rules) -> Callable[[int, str], bool] | None:
    """For decoding: whether row i's answer leaves candidates for ranking to score (and so its prompt
    is worth keeping); None where no row of the batch is ranked."""
    if not any(modes):
        return None

    def scored(i: int, text: str) -> bool:
        mode, spec = modes[i], docs[i].spec
        if not mode:
            return False
        values = parse_answer(text, spec.fields).fields
        return bool(to_score(spec.names, values, docs[i].text, rules, mode, spec.strings)[1])

    return scored


def _shared_prefix(tokenizer, docs: list[Document], prompts: list[list[int]]) -> list[int]:
    """The prompt tokens every document of the batch starts with that do not depend on its text: the
    common start of each prompt and its template with an empty document, over the batch. One token is
    held back so that every prompt still has tokens of its own to compute."""
    shared: list[int] | None = None
    for doc, ids in zip(docs, prompts):
        template = encode_chat(tokenizer, doc.spec.messages(""))
        n = common_prefix(template, ids)
        shared = ids[:n] if shared is None else shared[: common_prefix(shared, ids[:n])]
    return (shared or [])[:-1]
