"""Schema-constrained JSON decoding with llguidance, jumping over forced stretches.

Why llguidance (compared on this CPU, see ../shared/FACTS.md): it compiles a JSON Schema in
milliseconds, adds ≈ 0.5 ms per token, and tells which tokens the grammar forces next
(`compute_ff_tokens`) — keys, quotes, colons and commas of a schema are forced, so they are appended
in one forward pass instead of being decoded one by one. xgrammar is as fast but its HF processor
cannot jump forward; outlines adds ≈ 31 ms per token; lm-format-enforcer failed on our schemas.

The loop is greedy over the grammar-masked logits, on a KV cache. Each sampled token keeps its log-
probability under the model's *unmasked* distribution (how sure the model itself was); forced tokens
have none. `field_confidence` turns those into per-field confidences.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

_LL_TOKENIZERS: dict[int, Any] = {}


def ll_tokenizer(tokenizer, vocab_size: int):
    """llguidance's view of a Hugging Face fast tokenizer (built once per tokenizer: ≈ 1 s)."""
    key = id(tokenizer)
    if key not in _LL_TOKENIZERS:
        import llguidance.hf

        _LL_TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
    return _LL_TOKENIZERS[key]


MAX_VALUE_CHARS = 160


def flat_schema(names: list[str], *, max_length: int = MAX_VALUE_CHARS) -> dict[str, Any]:
    """The JSON Schema of an extraction answer: every field a bounded string or null, no other keys.
    Bounded strings stop a small model from looping inside a value until the token cap."""
    return {"type": "object", "additionalProperties": False, "required": list(names),
            "properties": {n: {"anyOf": [{"type": "string", "maxLength": max_length}, {"type": "null"}]}
                           for n in names}}


@dataclass
class Constrained:
    text: str
    tokens: list[int]
    logprobs: list[float | None]  # per generated token; None where the grammar forced it
    spans: list[tuple[int, int]]  # character span of each token in `text`
    finish_reason: str  # "stop" (the JSON is complete) or "length"
    prompt_tokens: int
    forced: int = 0
    forward_passes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def compile_grammar(json_schema: dict[str, Any]) -> str:
    from llguidance import LLMatcher

    # The separators json.dumps writes: the training answers (backend/prompts.py) look exactly like this.
    grammar = LLMatcher.grammar_from_json_schema(json.dumps(json_schema), defaults={
        "whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
    error = LLMatcher.validate_grammar(grammar)
    if error:
        raise ValueError(f"schema cannot be used for constrained decoding: {error}")
    return grammar


@torch.no_grad()
def constrained_generate(model, tokenizer, prompt_ids: list[int], grammar: str, *, max_new_tokens: int,
                         device, eos_ids: list[int], jump_forward: bool = True) -> Constrained:
    from llguidance import LLMatcher
    from llguidance.torch import allocate_token_bitmask, apply_token_bitmask_inplace, fill_next_token_bitmask
    from transformers import DynamicCache

    vocab = model.get_output_embeddings().weight.shape[0]
    ll_tok = ll_tokenizer(tokenizer, vocab)
    matcher = LLMatcher(ll_tok, grammar, log_level=0)
    if matcher.is_error():
        raise ValueError(f"grammar error: {matcher.get_error()}")
    bitmask = allocate_token_bitmask(1, ll_tok.vocab_size)
    cache = DynamicCache()
    logits = model(input_ids=torch.tensor([prompt_ids], device=device), cache=cache, use_cache=True).logits[0, -1].float()
    tokens: list[int] = []
    logprobs: list[float | None] = []
    passes, forced, finish = 1, 0, "length"
    while len(tokens) < max_new_tokens:
        if matcher.is_stopped():
            finish = "stop"
            break
        forced_now = matcher.compute_ff_tokens() if jump_forward else []
        step = [t for t in forced_now if t not in eos_ids][:max_new_tokens - len(tokens)]
        if step:  # forced by the grammar: no choice to make
            if not matcher.consume_tokens(step):
                raise RuntimeError(f"grammar refused its own forced tokens: {matcher.get_error()}")
            tokens += step
            logprobs += [None] * len(step)
            forced += len(step)
        else:
            fill_next_token_bitmask(matcher, bitmask)
            masked = logits.clone().unsqueeze(0)
            apply_token_bitmask_inplace(masked, bitmask.to(masked.device))
            token = int(masked[0].argmax())
            if token in eos_ids or masked[0, token] == float("-inf"):
                finish = "stop"
                break
            logprobs.append(float(torch.log_softmax(logits, -1)[token]))
            if not matcher.consume_token(token):
                raise RuntimeError(f"grammar refused token {token}: {matcher.get_error()}")
            tokens.append(token)
            step = [token]
        if matcher.is_stopped():
            finish = "stop"
            break
        logits = model(input_ids=torch.tensor([step], device=device), cache=cache, use_cache=True).logits[0, -1].float()
        passes += 1
    text, spans = _decode_with_spans(tokenizer, tokens)
    return Constrained(text, tokens, logprobs, spans, finish, len(prompt_ids), forced, passes)


def _decode_with_spans(tokenizer, tokens: list[int]) -> tuple[str, list[tuple[int, int]]]:
    spans, previous = [], ""
    for i in range(len(tokens)):
        current = tokenizer.decode(tokens[:i + 1], skip_special_tokens=True)
        spans.append((len(previous), len(current)))
        previous = current
    return previous, spans


def value_spans(text: str, names: list[str]) -> dict[str, tuple[int, int]]:
    """Where each top-level field's value sits in a JSON answer (the quotes of a string excluded)."""
    decoder, found, position = json.JSONDecoder(), {}, 0
    for name in names:
        key = json.dumps(name)
        at = text.find(key, position)
        if at < 0:
            continue
        colon = text.find(":", at + len(key))
        start = colon + 1
        while start < len(text) and text[start] in " \n\t":
            start += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        found[name] = (start + 1, end - 1) if isinstance(value, str) else (start, end)
        position = end
    return found


def field_confidence(result: Constrained, names: list[str]) -> dict[str, float | None]:
    """Per field: exp(mean log-probability) of the sampled tokens that overlap its value, i.e. the
    geometric mean of the model's own probabilities for the value's tokens; 1.0 when every token of
    the value was forced; None when the field is absent from the answer."""
    out: dict[str, float | None] = {}
    for name, (start, end) in value_spans(result.text, names).items():
        lps = [lp for (a, b), lp in zip(result.spans, result.logprobs) if a < max(end, start + 1) and b > start
               and lp is not None]
        out[name] = math.exp(sum(lps) / len(lps)) if lps else 1.0
    for name in names:
        out.setdefault(name, None)
    return out


MAX_ITEMS = 32


def bound_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The schema with every string given a maxLength, every array a maxItems and every number bounds
    (±10^12, 4 decimals) where it has none, and the most tokens any answer it allows can take (a token
    is at least one character). With that budget a constrained answer is never cut off mid-JSON."""
    out = dict(schema)
    kind = out.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    budget = 0
    for key in ("anyOf", "oneOf"):
        if key in out:
            parts = [bound_schema(s) for s in out[key]]
            out[key] = [p for p, _ in parts]
            budget = max(budget, *(b for _, b in parts))
    if "enum" in out:
        budget = max(budget, *(len(json.dumps(v)) for v in out["enum"]))
    if "string" in kinds:
        out.setdefault("maxLength", MAX_VALUE_CHARS)
        budget = max(budget, 2 * out["maxLength"] + 2)  # an escaped character ("\n") takes two
    if kinds & {"number", "integer"}:  # digits are bounded too: a small model can run on in a number forever
        out.setdefault("minimum", -10**12)
        out.setdefault("maximum", 10**12)
        if "number" in kinds:
            out.setdefault("multipleOf", 0.0001)
        budget = max(budget, 24)
    if kinds & {"boolean", "null"}:
        budget = max(budget, 5)
    if "object" in kinds or "properties" in out:
        props = {k: bound_schema(v) for k, v in out.get("properties", {}).items()}
        out["properties"] = {k: p for k, (p, _) in props.items()}
        out.setdefault("additionalProperties", False)
        budget = max(budget, 2 + sum(len(k) + 4 + b for k, (_, b) in props.items()))
    if "array" in kinds:
        item, item_budget = bound_schema(out.get("items", {"type": "string"}))
        out["items"] = item
        out.setdefault("maxItems", MAX_ITEMS)
        budget = max(budget, 2 + out["maxItems"] * (item_budget + 1))
    return out, max(budget, 8)
