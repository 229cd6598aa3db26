"""Candidate generation and model scoring for typed fields: instead of decoding an amount or a date
freely, list the document's amount-like (date-like) spans and let the model choose among them.

- `amount_candidates(text)` / `date_candidates(text)`: every span that reads as an amount (as a date),
  in document order, as printed (amounts without their currency marker, which `backend.values` ignores
  anyway);
- `line_candidates(text, within, max_lines, prefixes)`: for text fields printed as whole lines (a name,
  an address): every run of up to `max_lines` consecutive lines starting in the first `within` lines,
  joined by a space, and with `prefixes` every line's first words (a name before its registration
  number); the window is learned from the training labels (`conventions.learn_lines`);
- `score_values(...)`: the model's log-likelihood of each value as the field's answer: the extraction
  prompt, the answer written up to the field (the fields before it as already predicted), then the
  value and the characters that close it (`"` and the next key's separator, or `}`). The prompt and
  answer prefix are computed once; the candidates run in one batch on its KV cache;
- `rank(...)`: candidates grouped by what they mean (the same number / the same day printed twice is one
  candidate; the probabilities of its forms, and of each place it is printed, add up), best first.

The sum of log-probabilities over a value and its closing quote is the probability of the whole answer
string, so values of different lengths compare fairly (no length normalisation).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from backend.inference.decoding import PromptState, common_prefix
from backend.values import AMOUNT, parse_date, parse_decimal

_MONTH = r"(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*"
DATE = re.compile(
    r"(?<![\w/.-])(?:"
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"  # 2018-12-25
    r"|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})"  # 25/12/2018, 25-12-18
    r"|\d{1,2}[- /]?" + _MONTH + r"[-,. /]*(?:\d{4}|\d{2})"  # 25 DEC 2018, 25-DEC-18
    r"|" + _MONTH + r"[- ]?\d{1,2},?[- ]?\d{4}"  # DEC 25, 2018
    r")(?![\w/.-]*\d)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Candidate:
    value: str  # as printed (amounts: the number without a currency marker)
    start: int  # where it is in the document
    end: int


def amount_candidates(text: str) -> list[Candidate]:
    """Amount-like spans with one or two decimals ("12.50", "RM 1,250.00", "-0.02"), each printed number
    once per place; numbers inside dates, times, codes or longer numbers, and rates ("6.00%") are not
    candidates."""
    return [
        Candidate(m.group(1), m.start(1), m.end(1))
        for m in AMOUNT.finditer(text)
        if parse_decimal(m.group(1)) is not None
    ]


def date_candidates(text: str) -> list[Candidate]:
    """Date-like spans that read as a real date (`backend.values.parse_date`), without any time printed after them."""
    return [Candidate(m.group(), m.start(), m.end()) for m in DATE.finditer(text) if parse_date(m.group()) is not None]


def line_candidates(text: str, within: int, max_lines: int, prefixes: bool = False) -> list[Candidate]:
    """Runs of 1..`max_lines` consecutive non-empty lines that start in the first `within` of them, as one
    line (joined by a space), in document order; with `prefixes`, also each line's leading words (one
    word, two words, ...) short of the whole line."""
    spans = [m.span(1) for m in re.finditer(r"^[^\S\n]*(\S(?:[^\n]*\S)?)", text, re.MULTILINE)]  # each line, trimmed
    out = []
    for i, (start, end) in enumerate(spans[:within]):
        if prefixes:
            out += [
                Candidate(text[start : start + m.end()], start, start + m.end())
                for m in re.finditer(r"\S+(?=\s+\S)", text[start:end])
            ]
        for k in range(1, max_lines + 1):
            if i + k > len(spans):
                break
            stop = spans[i + k - 1][1]
            out.append(Candidate(" ".join(text[a:b] for a, b in spans[i : i + k]), start, stop))
    return out


def meaning(field_kind: str) -> Callable[[str], Any]:
    """What makes two candidate values the same: the number, the day, or the text."""
    if field_kind == "amount":
        return parse_decimal
    if field_kind == "date":
        return parse_date
    return lambda v: v


def answer_prefix(names: list[str], values: dict[str, Any], field: str) -> tuple[str, str]:
    """The answer written up to `field`'s value (the fields before it as `values` has them), and the
    text that closes a string value there. Same layout as `prompts.extraction_answer`."""
    at = names.index(field)
    head = ", ".join(f"{json.dumps(n)}: {json.dumps(values.get(n), ensure_ascii=False)}" for n in names[:at])
    prefix = "{" + (head + ", " if head else "") + json.dumps(field) + ': "'
    closing = '", ' if at < len(names) - 1 else '"}'
    return prefix, closing


@torch.no_grad()
def _extend(model, cache, ids: list[int], start: int, device) -> torch.Tensor:
    """Feed `ids` (one row, positions from `start`) into `cache`; the log-probabilities after the last."""
    positions = torch.arange(start, start + len(ids), device=device).unsqueeze(0)
    logits = (
        model(
            input_ids=torch.tensor([ids], device=device),
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        .logits[0, -1]
        .float()
    )
    return torch.log_softmax(logits, dim=-1)


LOGITS_BUDGET = 2**26  # vocabulary logits held at once when scoring (256 MB in fp32): rows go in chunks


@torch.no_grad()
def _score_on(
    model, cache, start: int, first: torch.Tensor, continuations: list[list[int]], device, budget: int = LOGITS_BUDGET
) -> list[float]:
    """Log-likelihood of each continuation on a one-row cache of `start` tokens whose next-token
    log-probabilities are `first`: the continuations run in batches (right-padded, so no row attends
    to padding) of as many rows as keep rows x width x vocabulary logits within `budget` (a 262k-token
    vocabulary and twenty 60-token address candidates would otherwise hold gigabytes); the cache is consumed."""
    scores = [float(first[c[0]]) if c else 0.0 for c in continuations]
    width = max((len(c) for c in continuations), default=0)
    if width <= 1:
        return scores
    rows = max(1, budget // (width * first.shape[-1]))
    for at in range(0, len(continuations), rows):
        chunk = continuations[at : at + rows]
        branch = cache if at + rows >= len(continuations) else copy.deepcopy(cache)
        if len(chunk) > 1:
            branch.batch_repeat_interleave(len(chunk))
        ids = torch.tensor([c + [c[-1]] * (width - len(c)) for c in chunk], device=device)
        positions = torch.arange(start, start + width, device=device).expand(len(chunk), -1)
        logits = model(input_ids=ids, position_ids=positions, cache=branch, use_cache=True).logits[:, :-1]
        for i, c in enumerate(chunk):
            if len(c) > 1:
                row = torch.log_softmax(logits[i, : len(c) - 1].float(), dim=-1)
                scores[at + i] += float(row[torch.arange(len(c) - 1), torch.tensor(c[1:], device=device)].sum())
        del logits
    return scores


@torch.no_grad()
def score_continuations(
    model, context: list[int], continuations: list[list[int]], device=None, *, budget: int = LOGITS_BUDGET
) -> list[float]:
    """Log-likelihood of each continuation after `context`: one forward pass over the context, then the
    continuations in batches on its KV cache, as many rows per batch as keep their logits within `budget`."""

    if not continuations:
        return []
    device = device or next(model.parameters()).device
    cache = DynamicCache()
    first = _extend(model, cache, list(context), 0, device)
    return _score_on(model, cache, len(context), first, continuations, device, budget=budget)


def _answers(tokenizer, prefix: str, values: list[str], closing: str) -> tuple[list[list[int]], int]:
    """Each answer `prefix + value + closing` tokenised whole (as the model saw answers in training, so a
    value that merges with the characters around it is scored as the model would write it), and how
    many leading tokens every answer shares (at most the prefix's; every answer keeps one to score)."""
    bodies = [json.dumps(v, ensure_ascii=False)[1:-1] for v in values]
    full = [tokenizer(prefix + body + closing, add_special_tokens=False)["input_ids"] for body in bodies]
    shared = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    for ids in full:
        shared = min(shared, common_prefix(full[0], ids))
    return full, min(shared, min(len(ids) for ids in full) - 1)


def score_values(
    model, tokenizer, prompt_ids: list[int], prefix: str, values: list[str], closing: str, device=None
) -> list[float]:
    """Log-likelihood of `prefix + value + closing` beyond the part every value shares, after the prompt."""
    return score_queries(model, tokenizer, prompt_ids, [(prefix, values, closing)], device)[0]


@torch.no_grad()
def score_queries(
    model,
    tokenizer,
    prompt_ids: list[int],
    queries: list[tuple[str, list[str], str]],
    device=None,
    prompt: PromptState | None = None,
) -> list[list[float]]:
    """`score_values` for several (prefix, values, closing) after one prompt: the prompt is computed
    once (not at all when `prompt` holds it already, as decoding left it), each query's shared answer
    prefix once on a copy of its cache."""

    device = device or next(model.parameters()).device
    results: list[list[float]] = [[] for _ in queries]
    if not any(values for _, values, _ in queries):
        return results
    if prompt is not None:
        cache, first = prompt.cache, prompt.next_logprobs
    else:
        cache = DynamicCache()
        first = _extend(model, cache, list(prompt_ids), 0, device)
    for n, (prefix, values, closing) in enumerate(queries):
        if not values:
            continue
        full, shared = _answers(tokenizer, prefix, values, closing)
        branch = copy.deepcopy(cache)
        head = _extend(model, branch, full[0][:shared], len(prompt_ids), device) if shared else first
        results[n] = _score_on(model, branch, len(prompt_ids) + shared, head, [ids[shared:] for ids in full], device)
    return results


def group(
    values: list[str], scores: list[float], key: Callable[[str], Any], counts: dict[str, int] | None = None
) -> list[tuple[str, float]]:
    """(the best-scored form, log of the summed probability of its forms) per meaning, best first; a
    form printed `counts[form]` times counts that often (the value is the answer if any of its spans
    is). Values with no meaning (key None) are their own group."""
    groups: dict[Any, list[tuple[str, float]]] = {}
    for value, score in zip(values, scores):
        k = key(value)
        weight = math.log(counts.get(value, 1)) if counts else 0.0
        groups.setdefault(value if k is None else k, []).append((value, score + weight))
    ranked = [(max(forms, key=lambda f: f[1])[0], logsumexp([s for _, s in forms])) for forms in groups.values()]
    return sorted(ranked, key=lambda r: -r[1])


def logsumexp(xs: list[float]) -> float:
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))


def rank(
    model,
    tokenizer,
    prompt_ids: list[int],
    names: list[str],
    values: dict[str, Any],
    field: str,
    candidates: list[str],
    kind: str,
    device=None,
) -> list[tuple[str, float]]:
    """The distinct candidate values for `field`, each with its log-likelihood as the answer there, best first."""
    return rank_fields(model, tokenizer, prompt_ids, names, values, {field: (candidates, kind)}, device)[field]


def rank_fields(
    model,
    tokenizer,
    prompt_ids: list[int],
    names: list[str],
    values: dict[str, Any],
    fields: dict[str, tuple[list[str], str]],
    device=None,
    prompt: PromptState | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """`rank` for several fields of one document ({field: (candidate values, kind)}), the prompt computed once.
    Each field is scored after the answer written up to it with `values` (the free prediction). A value
    listed n times (printed in n places) has its probability counted n times: the document's spans are
    the choices, and several of them may say the same thing (TOTAL 9.00, CASH 9.00). `prompt`: the
    prompt already read (`decoding.PromptState`), or None to read it here."""
    queries, forms, counts = [], {}, {}
    for field, (candidates, _) in fields.items():
        forms[field] = list(dict.fromkeys(candidates))
        counts[field] = Counter(candidates)
        prefix, closing = answer_prefix(names, values, field)
        queries.append((prefix, forms[field], closing))
    scores = score_queries(model, tokenizer, prompt_ids, queries, device, prompt)
    return {
        field: group(forms[field], s, meaning(kind), counts[field]) if forms[field] else []
        for (field, (_, kind)), s in zip(fields.items(), scores)
    }
