"""The constrained decode loop: several documents at once, each under its own grammar, with forced
stretches jumped over and a shared prompt prefix read from a cache.

Why llguidance (compared on this CPU, see ../shared/FACTS.md): it compiles a JSON Schema in
milliseconds, adds ≈ 0.5 ms per token, and tells which tokens the grammar forces next
(`compute_ff_tokens`) — keys, quotes, colons and commas of a schema are forced, so they are appended
in one forward pass instead of being decoded one by one. xgrammar is as fast but its HF processor
cannot jump forward; outlines adds ≈ 31 ms per token; lm-format-enforcer failed on our schemas.

One forward pass advances every unfinished row: by its forced tokens when the grammar forces some,
else by one greedy token chosen under the grammar's mask. Rows advance by different numbers of
tokens, so each step is padded on the left to the widest row; padding is masked out of attention
and position ids are kept per row, so a row's tokens see exactly what they would see alone.
Finished rows leave the batch (their cache rows are dropped).

Each chosen token keeps its log-probability under the model's *unmasked* distribution (how sure the
model itself was); forced tokens have none. `constrained.field_confidence` turns those into
per-field confidences.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
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
    cached_prompt_tokens: int = 0  # prompt tokens read from the prefix cache, not computed
    extra: dict[str, Any] = field(default_factory=dict)


class PrefixCache:
    """KV caches of prompt prefixes (system prompt + field list), per model state. The key must name
    the weights (base + adapter revision): a prefix's keys and values depend on the adapter."""

    def __init__(self, size: int = 16):
        self.size = size
        self._items: OrderedDict[tuple, tuple[list[int], Any]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, model, weights: str, prefix: list[int], device) -> Any:
        from transformers import DynamicCache

        key = (weights, tuple(prefix))
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key][1]
        self.misses += 1
        cache = DynamicCache()
        with torch.no_grad():
            model(input_ids=torch.tensor([prefix], device=device), cache=cache, use_cache=True)
        self._items[key] = (prefix, cache)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return cache

    def clear(self) -> None:
        self._items.clear()


class _Row:
    def __init__(self, matcher, prompt_tokens: int, budget: int, position: int):
        self.matcher, self.budget, self.position = matcher, budget, position
        self.prompt_tokens = prompt_tokens
        self.tokens: list[int] = []
        self.logprobs: list[float | None] = []
        self.forced = self.passes = 0
        self.finish: str | None = None


@torch.no_grad()
def constrained_batch(model, tokenizer, prompts: list[list[int]], grammars: list[str], *,
                      max_new_tokens: list[int] | int, device, eos_ids: list[int], jump_forward: bool = True,
                      prefix: tuple[list[int], Any] | None = None) -> list[Constrained]:
    """Decode one answer per prompt under its grammar. `prefix` = (token ids, their KV cache at batch
    size 1): used when every prompt starts with those ids, so only the rest of each prompt is computed."""
    from llguidance import LLMatcher
    from llguidance.torch import allocate_token_bitmask, apply_token_bitmask_inplace, fill_next_token_bitmask

    vocab = model.get_output_embeddings().weight.shape[0]
    ll_tok = ll_tokenizer(tokenizer, vocab)
    budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts)
    rows = []
    for prompt, grammar, budget in zip(prompts, grammars, budgets):
        matcher = LLMatcher(ll_tok, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"grammar error: {matcher.get_error()}")
        rows.append(_Row(matcher, len(prompt), budget, len(prompt)))
    shared = prefix is not None and all(len(p) > len(prefix[0]) and p[:len(prefix[0])] == prefix[0] for p in prompts)
    start = len(prefix[0]) if shared else 0
    cache = _expand(prefix[1], len(rows)) if shared else None
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache()
    mask = torch.ones((len(rows), start), dtype=torch.long, device=device)
    steps = [p[start:] for p in prompts]
    first = [start] * len(rows)
    live = list(range(len(rows)))  # row index of each batch position
    bitmask = allocate_token_bitmask(len(rows), ll_tok.vocab_size)
    while True:
        logits, mask = _forward(model, cache, mask, [steps[i] for i in live], [first[i] for i in live], device)
        for i in live:
            rows[i].passes += 1
        keep: list[int] = []
        choose = []  # batch positions whose next token is chosen, not forced
        for b, i in enumerate(live):
            row = rows[i]
            row.position = first[i] + len(steps[i])
            step = []
            if not row.matcher.is_stopped() and len(row.tokens) < row.budget and jump_forward:
                step = [t for t in row.matcher.compute_ff_tokens() if t not in eos_ids][:row.budget - len(row.tokens)]
            if row.matcher.is_stopped():
                row.finish = "stop"
            elif len(row.tokens) >= row.budget:
                row.finish = "length"
            elif step:
                if not row.matcher.consume_tokens(step):
                    raise RuntimeError(f"grammar refused its own forced tokens: {row.matcher.get_error()}")
                row.tokens += step
                row.logprobs += [None] * len(step)
                row.forced += len(step)
            else:
                fill_next_token_bitmask(row.matcher, bitmask, b)
                choose.append(b)
            steps[i] = step
        if choose:
            raw = logits[choose].float()
            masked = raw.clone()
            apply_token_bitmask_inplace(masked, bitmask[choose].to(masked.device))
            picked = masked.argmax(-1)
            logprobs = torch.log_softmax(raw, -1).gather(1, picked[:, None])[:, 0]
            for n, b in enumerate(choose):
                row, token = rows[live[b]], int(picked[n])
                if token in eos_ids or masked[n, token] == float("-inf"):
                    row.finish = "stop"
                    continue
                if not row.matcher.consume_token(token):
                    raise RuntimeError(f"grammar refused token {token}: {row.matcher.get_error()}")
                row.tokens.append(token)
                row.logprobs.append(float(logprobs[n]))
                steps[live[b]] = [token]
        for b, i in enumerate(live):
            row = rows[i]
            if row.finish is None and row.matcher.is_stopped():
                row.finish = "stop"  # complete JSON: the tokens just appended need no forward pass
            elif row.finish is None and len(row.tokens) >= row.budget:
                row.finish = "length"
            if row.finish is None:
                keep.append(b)
                first[i] = row.position
        if not keep:
            break
        if len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask = mask[index]
            live = [live[b] for b in keep]
    out = []
    for row in rows:
        text, spans = _decode_with_spans(tokenizer, row.tokens)
        out.append(Constrained(text, row.tokens, row.logprobs, spans, row.finish or "length", row.prompt_tokens,
                               row.forced, row.passes, start))
    return out


def constrained_generate(model, tokenizer, prompt_ids: list[int], grammar: str, *, max_new_tokens: int,
                         device, eos_ids: list[int], jump_forward: bool = True) -> Constrained:
    """One document: a batch of one."""
    return constrained_batch(model, tokenizer, [prompt_ids], [grammar], max_new_tokens=max_new_tokens,
                             device=device, eos_ids=eos_ids, jump_forward=jump_forward)[0]


def _expand(cache, rows: int):
    copied = copy.deepcopy(cache)
    if rows > 1:
        copied.batch_repeat_interleave(rows)
    return copied


def _forward(model, cache, mask: torch.Tensor, steps: list[list[int]], positions: list[int], device):
    """Feed each row its tokens (left-padded to the widest row); the last real token's logits per row
    and the attention mask grown by this step."""
    width = max(len(s) for s in steps)
    ids = torch.tensor([[0] * (width - len(s)) + s for s in steps], device=device)
    real = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in steps], device=device)
    pos = torch.tensor([[p] * (width - len(s)) + list(range(p, p + len(s))) for s, p in zip(steps, positions)],
                       device=device)
    mask = torch.cat([mask, real], dim=1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True).logits[:, -1]
    return logits, mask


def _decode_with_spans(tokenizer, tokens: list[int]) -> tuple[str, list[tuple[int, int]]]:
    spans, previous = [], ""
    for i in range(len(tokens)):
        current = tokenizer.decode(tokens[:i + 1], skip_special_tokens=True)
        spans.append((len(previous), len(current)))
        previous = current
    return previous, spans
