"""The constrained decode loop: several documents at once, each under its own grammar, with forced
stretches jumped over and a shared prompt prefix read from a cache.

Why llguidance (compared on a 2-core CPU with SmolLM2-135M): it compiles a JSON Schema in
milliseconds, adds ≈ 0.5 ms per token, and tells which tokens the grammar forces next
(`compute_ff_tokens`) — keys, quotes, colons and commas of a schema are forced, so they are appended
in one forward pass instead of being decoded one by one. xgrammar is as fast but its HF processor
cannot jump forward; outlines adds ≈ 31 ms per token; lm-format-enforcer failed on our schemas.

The prompts are read first, each row alone at its own length (`_prefill`), and their caches stacked.
Then one forward pass advances every unfinished row: by its forced tokens when the grammar forces some,
else by one greedy token chosen under the grammar's mask, with the stretch the grammar forces after
it (a value's closing quote and the next key go in one pass, not two). Rows advance by different numbers of
tokens, so each step is padded on the left to the widest row; padding is masked out of attention
and position ids are kept per row, so a row's tokens see exactly what they would see alone.
Finished rows leave the batch (their cache rows are dropped; a caller that will score answers after
the prompt, as candidate ranking does, may keep a leaving row's prompt part: `keep_prompt`).

Each chosen token keeps its log-probability under the model's *unmasked* distribution (how sure the
model itself was); forced tokens have none. `constrained.field_confidence` turns those into
per-field confidences.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llguidance.hf
import torch
from llguidance import LLMatcher
from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask
from transformers import DynamicCache

from backend.errors import InvalidRequest
from backend.inference.kv import roomy_cache, row_cache

_LL_TOKENIZERS: dict[int, Any] = {}


class GrammarError(InvalidRequest):
    """The schema's grammar gave up on an answer (too complex a schema): the caller's request to fix."""


def ll_tokenizer(tokenizer, vocab_size: int):
    """llguidance's view of a Hugging Face fast tokenizer (built once per tokenizer: ≈ 1 s)."""
    key = id(tokenizer)
    if key not in _LL_TOKENIZERS:
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
    prompt: PromptState | None = None  # the prompt's keys and values, where `keep_prompt` asked for them


@dataclass
class PromptState:
    """A prompt read into a one-row cache, and the log-probabilities of the token after it: what
    scoring answers after the prompt goes on from, instead of reading the prompt again."""

    cache: Any
    next_logprobs: torch.Tensor


class PrefixCache:
    """KV caches of prompt prefixes (system prompt + field list), per model state. The key must name
    the weights (base + adapter revision): a prefix's keys and values depend on the adapter."""

    def __init__(self, size: int = 16):
        self.size = size
        self._items: OrderedDict[tuple, tuple[list[int], Any]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, model, weights: str, prefix: list[int], device) -> Any:
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
    def __init__(self, matcher, prompt: list[int], budget: int, drafting: int, gone: Callable[[], bool] | None = None):
        self.matcher, self.budget, self.gone = matcher, budget, gone
        self.prompt_tokens = len(prompt)
        self.lookup = _Lookup(prompt) if drafting else None
        self.tokens: list[int] = []
        self.logprobs: list[float | None] = []
        self.forced = self.passes = self.drafted = self.accepted = 0
        self.finish: str | None = None
        self.prompt: PromptState | None = None

    def done(self) -> bool:
        if self.finish is None and self.gone is not None and self.gone():
            self.finish = "cancelled"  # its caller left: the row leaves the batch, the others go on
        elif self.finish is None and self.matcher.is_stopped():
            self.finish = "stop"  # the JSON is complete
        elif self.finish is None and len(self.tokens) >= self.budget:
            self.finish = "length"
        return self.finish is not None


class _Lookup:
    """Where each 1-, 2- and 3-gram of the prompt last occurs: extraction copies values out of the
    document, so the tokens that followed the last generated n-gram there are a good guess."""

    def __init__(self, prompt: list[int], longest: int = 3):
        self.prompt, self.longest = prompt, longest
        self.after: dict[tuple[int, ...], int] = {}
        for n in range(1, longest + 1):
            for end in range(n, len(prompt)):
                self.after[tuple(prompt[end - n : end])] = end

    def propose(self, history: list[int], k: int) -> list[int]:
        for n in range(min(self.longest, len(history)), 0, -1):
            end = self.after.get(tuple(history[-n:]))
            if end is not None:
                return self.prompt[end : end + k]
        return []


ROOM = 128  # answer positions the batch cache holds before it grows (receipt answers: ≈ 90 tokens)
_BITS = torch.arange(32, dtype=torch.int32)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set the logits of the tokens the grammar forbids to -inf, in place: llguidance's bitmask (32 tokens
    per int32 word, bit i of word w = token 32w + i). Plain torch ops on purpose: llguidance's own
    `apply_token_bitmask_inplace` is a torch.compile kernel that allowed half the vocabulary when torch
    ran its AVX2 kernels on an AVX-512 CPU, and plain ops cost nothing at these sizes."""
    bits = ((bitmask.unsqueeze(-1) >> _BITS.to(bitmask.device)) & 1).flatten(-2)
    vocab = logits.shape[-1]
    if bits.shape[-1] < vocab:  # tokens past the mask's words are never allowed
        logits[..., bits.shape[-1] :] = float("-inf")
    logits[..., : min(vocab, bits.shape[-1])].masked_fill_(bits[..., :vocab] == 0, float("-inf"))


@torch.no_grad()
def constrained_batch(
    model,
    tokenizer,
    prompts: list[list[int]],
    grammars: list[str],
    *,
    max_new_tokens: list[int] | int,
    device,
    eos_ids: list[int],
    jump_forward: bool = True,
    prefix: tuple[list[int], Any] | None = None,
    draft: int = 0,
    gone: list[Callable[[], bool] | None] | None = None,
    keep_prompt: Callable[[int, str], bool] | None = None,
) -> list[Constrained]:
    """Decode one answer per prompt under its grammar, greedily. `gone[i]`, when given, is asked
    between steps whether row i's caller has left; such a row stops (finish "cancelled") and leaves
    the batch, which goes on for the others.

    `prefix` = (token ids, their KV cache at batch size 1): used when every prompt starts with those
    ids, so only the rest of each prompt is computed. `draft` > 0 turns on copy drafting: after each
    chosen token, up to `draft` tokens that followed the same n-gram in the prompt (and that the
    grammar allows) are fed along in the same pass; each is kept while it equals the greedy choice
    at its position, the first mismatch is replaced by that choice, and the rest is masked out. The
    answer is the same greedy answer, in fewer passes when values are copied from the document.

    `keep_prompt(i, text)`, when given, is asked as row i leaves the batch with its answer `text`;
    where it says yes, the row's prompt part of the cache is copied out (`Constrained.prompt`) before
    the row's cache is dropped."""

    vocab = model.get_output_embeddings().weight.shape[0]
    ll_tok = ll_tokenizer(tokenizer, vocab)
    budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts)
    rows = []
    for n, (prompt, grammar, budget) in enumerate(zip(prompts, grammars, budgets)):
        matcher = LLMatcher(ll_tok, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequest(f"grammar error: {matcher.get_error()}")
        rows.append(_Row(matcher, prompt, budget, draft, gone[n] if gone else None))
    shared = prefix is not None and all(len(p) > len(prefix[0]) and p[: len(prefix[0])] == prefix[0] for p in prompts)
    start = len(prefix[0]) if prefix is not None and shared else 0
    feed = [p[start:] for p in prompts]  # per row: tokens the matcher has consumed, not yet fed to the model
    room = min(max(budgets), ROOM) + draft  # the cache grows past it when an answer runs longer
    logits, cache, mask = _prefill(
        model, prefix[1] if prefix is not None and shared else None, feed, start, device, room
    )
    positions = [start + len(f) for f in feed]
    read, ends = logits[:, 0], max(positions)  # each prompt's next-token logits; where the prompts end
    feed = [[] for _ in rows]  # the prompts are in the cache; the first pass below chooses from `logits`
    drafts: list[list[int]] = [[] for _ in rows]  # per row: guesses fed along, not yet consumed
    live = list(range(len(rows)))  # row index of each batch position
    bitmask = allocate_token_bitmask(1, ll_tok.vocab_size)

    def choose(row: _Row, logits: torch.Tensor) -> int | None:
        """The greedy token the grammar allows (its log-probability recorded), or None at the end."""
        fill_next_token_bitmask(row.matcher, bitmask, 0)
        raw = logits.float()
        masked = raw.clone().unsqueeze(0)
        apply_bitmask(masked, bitmask.to(masked.device))
        token = int(masked[0].argmax())
        if token in eos_ids or masked[0, token] == float("-inf"):
            return None
        if not row.matcher.consume_token(token):
            raise GrammarError(f"schema: constrained decoding stopped: {row.matcher.get_error()}; simplify the schema")
        row.tokens.append(token)
        row.logprobs.append(float(torch.log_softmax(raw, -1)[token]))
        return token

    first = True
    while True:
        width = max(len(drafts[i]) for i in live) + 1
        if not first:
            logits, mask = _forward(
                model,
                cache,
                mask,
                [feed[i] + drafts[i] for i in live],
                [positions[i] for i in live],
                device,
                keep=width,
            )
        first = False
        keep: list[int] = []
        for b, i in enumerate(live):
            row, guess = rows[i], drafts[i]
            row.passes += 1
            cursor, accepted, following = width - len(guess) - 1, 0, []
            while not row.done():
                forced = _forced(row, eos_ids) if jump_forward else []
                if forced:  # no choice to make: appended, and fed in the next pass
                    following = forced
                    break
                token = choose(row, logits[b, cursor])
                if token is None:
                    row.finish = "stop"
                    break
                if accepted < len(guess) and guess[accepted] == token:
                    accepted, cursor = accepted + 1, cursor + 1  # fed already: its logits are at hand
                    continue
                following = [token]
                if jump_forward and not row.matcher.is_stopped():
                    following += _forced(row, eos_ids)  # fed with the token: one pass, not two
                break
            if len(guess) > accepted:
                mask[b, mask.shape[1] - (len(guess) - accepted) :] = 0  # wrong guesses: never attended to
            row.drafted, row.accepted = row.drafted + len(guess), row.accepted + accepted
            positions[i] += len(feed[i]) + accepted
            if row.done():
                continue
            feed[i], drafts[i] = following, []
            if row.lookup is not None and len(following) == 1:
                proposal = row.lookup.propose(row.tokens, min(draft, row.budget - len(row.tokens)))
                drafts[i] = proposal[: row.matcher.validate_tokens(proposal)] if proposal else []
            keep.append(b)
        if keep_prompt is not None:
            for b, i in enumerate(live):
                if b in keep or rows[i].finish == "cancelled":
                    continue
                if keep_prompt(i, tokenizer.decode(rows[i].tokens, skip_special_tokens=True)):
                    kept = row_cache(cache, b, ends - rows[i].prompt_tokens, ends)
                    rows[i].prompt = PromptState(kept, torch.log_softmax(read[i].float(), dim=-1))
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
        out.append(
            Constrained(
                text,
                row.tokens,
                row.logprobs,
                spans,
                row.finish or "length",
                row.prompt_tokens,
                row.forced,
                row.passes,
                start,
                {"drafted": row.drafted, "accepted": row.accepted},
                row.prompt,
            )
        )
    return out


def _forced(row: _Row, eos_ids: list[int]) -> list[int]:
    """The tokens the grammar forces next (within the row's budget), consumed and appended to the row."""
    forced = [t for t in row.matcher.compute_ff_tokens() if t not in eos_ids][: row.budget - len(row.tokens)]
    if forced:
        if not row.matcher.consume_tokens(forced):
            raise GrammarError(f"schema: constrained decoding stopped: {row.matcher.get_error()}; simplify the schema")
        row.tokens += forced
        row.logprobs += [None] * len(forced)
        row.forced += len(forced)
    return forced


def constrained_generate(
    model,
    tokenizer,
    prompt_ids: list[int],
    grammar: str,
    *,
    max_new_tokens: int,
    device,
    eos_ids: list[int],
    jump_forward: bool = True,
    draft: int = 0,
) -> Constrained:
    """One document: a batch of one."""
    return constrained_batch(
        model,
        tokenizer,
        [prompt_ids],
        [grammar],
        max_new_tokens=max_new_tokens,
        device=device,
        eos_ids=eos_ids,
        jump_forward=jump_forward,
        draft=draft,
    )[0]


def _prefill(
    model, prefix_cache, feeds: list[list[int]], start: int, device, room: int
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Each row's prompt read into one batch cache; the logits of each row's last prompt token, and the
    attention mask over the cache.

    Rows are read one at a time, each at its own length, and their caches stacked, left-padded to the
    longest: reading them as one padded batch would compute every padding position through every
    layer (a third more work on receipts of 330 to 680 tokens in batches of 8), and a matrix of one
    row's few hundred tokens keeps the CPU's matrix units as busy as a batch's. `prefix_cache`: the KV
    of the `start` prompt tokens every row shares (batch size 1), or None. The batch cache has `room`
    positions for the answers before it must grow (`kv.roomy_cache`)."""
    rows: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    last = []
    with torch.no_grad():
        for tokens in feeds:
            cache = copy.deepcopy(prefix_cache) if prefix_cache is not None else DynamicCache()
            ids = torch.tensor([tokens], device=device)
            pos = torch.arange(start, start + len(tokens), device=device).unsqueeze(0)
            mask = torch.ones((1, start + len(tokens)), dtype=torch.long, device=device)
            out = model(
                input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1
            )
            last.append(out.logits[0, -1])
            rows.append([_kv(layer) for layer in cache.layers])
    width = start + max(len(t) for t in feeds)
    mask = torch.tensor([[0] * (width - start - len(t)) + [1] * (start + len(t)) for t in feeds], device=device)
    return torch.stack(last).unsqueeze(1), roomy_cache(rows, width, room), mask


def _kv(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A full-attention cache layer's keys and values."""
    return layer.keys, layer.values


def _forward(model, cache, mask: torch.Tensor, steps: list[list[int]], positions: list[int], device, *, keep: int):
    """Feed each row its tokens (left-padded to the widest row); the logits of the last `keep` columns
    and the attention mask grown by this step."""
    width = max(len(s) for s in steps)
    ids = torch.tensor([[0] * (width - len(s)) + s for s in steps], device=device)
    real = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in steps], device=device)
    pos = torch.tensor(
        [[p] * (width - len(s)) + list(range(p, p + len(s))) for s, p in zip(steps, positions)], device=device
    )
    mask = torch.cat([mask, real], dim=1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=keep)
    return out.logits, mask


def _decode_with_spans(tokenizer, tokens: list[int]) -> tuple[str, list[tuple[int, int]]]:
    spans, previous = [], ""
    for i in range(len(tokens)):
        current = tokenizer.decode(tokens[: i + 1], skip_special_tokens=True)
        spans.append((len(previous), len(current)))
        previous = current
    return previous, spans


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading items `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
