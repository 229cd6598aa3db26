"""Models held in memory by a serving process: each base model loads once, its adapters attach to it.

A base model is wrapped in one `PeftModel`; every adapter for that base is loaded into it under its
own name and switched with `set_adapter` (no base reload), and base-only requests run with the
adapters disabled. Least-recently-used bases and adapters are dropped past their limits.
With fp32 weights, an adapter that has run `MERGE_AFTER_S` seconds in a row is merged into the base
weights (LoRA's extra matrix products then cost nothing: +13% documents/s for SmolLM2 on AVX2 kernels,
benchmarks/README.md) and unmerged before another adapter or the base model runs. Waiting for those
seconds bounds what adapters taking turns can lose to merging (a merge and an unmerge take ≈ 1 s each
for SmolLM2 on 2 cores) while a stream of work for one adapter gets the gain. bf16 weights would
drift by a rounding at every merge and unmerge, and int8 ones cannot take a merge: they never merge.
`generate` takes a batch of chats for one target (left-padded, one `model.generate` call); the
batcher (`backend/inference/batcher.py`) decides what goes into a batch. Only one thread — the
batcher's — calls into the models.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from backend import cores
from backend.errors import InvalidRequest
from backend.inference import kv
from backend.inference.bundle import AdapterBundle
from backend.inference.decoding import PrefixCache
from backend.inference.generate import padded_generate
from backend.models import int8
from backend.models.int8_calibration import calibrate_on_text
from backend.models.loading import cpu_has_bf16, default_device, load_tokenizer, resolve_model


@dataclass(frozen=True)
class GenRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs: hashable, immutable
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class GenResult:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class _Base:
    model: Any  # the plain model, or a PeftModel wrapping it once an adapter is attached
    tokenizer: Any
    context: int
    adapters: OrderedDict = field(default_factory=OrderedDict)  # adapter_id -> module key
    merged: str | None = None  # the module key merged into the base weights, if any
    streak: tuple[str | None, float] = (None, 0.0)  # the adapter key active now, and seconds it has run in a row


class PromptTooLongError(InvalidRequest):
    pass


MERGE_AFTER_S = 10.0  # seconds an adapter runs in a row before it is merged into the base weights


class ModelPool:
    def __init__(
        self,
        *,
        device: str = "auto",
        max_bases: int = 2,
        max_adapters: int = 16,
        max_prompt_tokens: int = 4096,
        dtype: str = "auto",
        merge: bool = True,
    ):
        self.max_prompt_tokens = max_prompt_tokens
        self.device = default_device() if device == "auto" else device
        self.weights = inference_dtype(self.device, dtype)  # "bfloat16", "float32" or "int8"
        self.int8 = self.weights == "int8"  # fp32 model, its frozen linear layers in int8
        self.dtype = torch.float32 if self.int8 else _TORCH_DTYPES[self.weights]
        self.merge = merge and self.weights == "float32"  # see the module's docstring
        self.prefixes = PrefixCache()  # KV of shared prompt prefixes, keyed by target: see extraction.py
        self.max_bases, self.max_adapters = max_bases, max_adapters
        self._bases: OrderedDict[str, _Base] = OrderedDict()
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.RLock()  # encode() runs inside generate() too
        self._admission: dict[str, tuple[Any, int]] = {}  # target -> (tokenizer, context), for admit()
        self._admission_lock = threading.Lock()  # never held while generating

    # -- loading ---------------------------------------------------------------------------------
    def _base(self, ref: str) -> _Base:
        if ref in self._bases:
            self._bases.move_to_end(ref)
            return self._bases[ref]
        from transformers import AutoModelForCausalLM

        path = resolve_model(ref)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()  # type: ignore[arg-type]
        if self.int8:  # smoothed by the ranges its layers see on a short built-in text
            int8.quantize_frozen(model, calibration=calibrate_on_text(model, self._tokenizer(path)))
        if model.config._attn_implementation == "sdpa":
            model.set_attn_implementation(kv.NAME)  # the same attention, without copying keys per query head
        base = _Base(model, self._tokenizer(path), int(getattr(model.config, "max_position_embeddings", 2048)))
        self._bases[ref] = base
        while len(self._bases) > self.max_bases:
            self._bases.popitem(last=False)
        return base

    def _tokenizer(self, path: str):
        if path not in self._tokenizers:
            tokenizer = load_tokenizer(path)
            tokenizer.padding_side = "left"
            self._tokenizers[path] = tokenizer
        return self._tokenizers[path]

    def _activate(self, target: AdapterBundle) -> tuple[_Base, Any]:
        """The base model with the target's adapter switched on (or all adapters off); its tokenizer."""
        if (share := cores.current()) is not None:
            share.apply()  # this process's share of the cores, as it stands now
        base = self._base(target.base)
        tokenizer = self._tokenizer(target.tokenizer_path) if target.tokenizer_path else base.tokenizer
        if target.adapter_id is None:
            self._unmerge(base)
            base.streak = (None, 0.0)
            return base, tokenizer
        identity = f"{target.adapter_id}#{target.revision or target.adapter_path}"
        key = re.sub(r"[^A-Za-z0-9_]", "_", identity)
        if base.merged != key:
            self._unmerge(base)  # before any adapter is loaded, deleted or switched
        if identity not in base.adapters:
            assert target.adapter_path is not None, target  # a target naming an adapter has its folder
            from peft import PeftModel

            for stale in [i for i in base.adapters if i.split("#")[0] == target.adapter_id]:
                base.model.delete_adapter(base.adapters.pop(stale))  # an older build of this name@version
            if isinstance(base.model, PeftModel):
                base.model.load_adapter(target.adapter_path, adapter_name=key)
            else:
                base.model = PeftModel.from_pretrained(base.model, target.adapter_path, adapter_name=key).eval()
            base.adapters[identity] = key
            while len(base.adapters) > self.max_adapters:
                _, old = base.adapters.popitem(last=False)
                base.model.delete_adapter(old)
        base.adapters.move_to_end(identity)
        if base.merged != key:
            base.model.set_adapter(key)
        if base.streak[0] != key:
            base.streak = (key, 0.0)
        if self.merge and base.merged is None and base.streak[1] >= MERGE_AFTER_S:
            base.model.merge_adapter()
            base.merged = key
        return base, tokenizer

    @staticmethod
    @contextmanager
    def _running(base: _Base) -> Iterator[None]:
        """Count the time the active adapter runs towards its streak."""
        key, started = base.streak[0], time.perf_counter()
        try:
            yield
        finally:
            if base.streak[0] == key and key is not None:
                base.streak = (key, base.streak[1] + time.perf_counter() - started)

    @staticmethod
    def _unmerge(base: _Base) -> None:
        """Take a merged adapter back out of the base weights."""
        if base.merged is not None:
            base.model.unmerge_adapter()
            base.merged = None

    def admit(self, target: AdapterBundle, messages: list[dict[str, str]], max_new_tokens: int) -> int:
        """Check a prompt against the limits before it is queued, without waiting for a generation
        that is running (its own tokenizer and lock); the prompt's length in tokens."""
        with self._admission_lock:
            key = f"{target.base}|{target.tokenizer_path}"
            if key not in self._admission:
                from transformers import AutoConfig

                path = resolve_model(target.base)
                context = int(getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", 2048))
                self._admission[key] = (load_tokenizer(target.tokenizer_path or path), context)
            tokenizer, context = self._admission[key]
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        size = len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        if size > self.max_prompt_tokens:
            raise PromptTooLongError(
                f"prompt of {size} tokens is over the limit of {self.max_prompt_tokens} "
                "(TUNEBRIDGE_MAX_PROMPT_TOKENS); shorten the input"
            )
        if size + max_new_tokens > context:
            raise PromptTooLongError(
                f"prompt of {size} tokens + {max_new_tokens} answer tokens exceed the model's "
                f"context of {context} tokens; shorten the input or max_tokens"
            )
        return size

    def tokenizer_for(self, target: AdapterBundle):
        with self._lock:
            return self._activate(target)[1]

    def loaded(self) -> dict[str, list[str]]:
        return {ref: list(b.adapters) for ref, b in self._bases.items()}

    # -- generation ------------------------------------------------------------------------------
    def encode(self, target: AdapterBundle, request: GenRequest) -> list[int]:
        with self._lock:
            base, tokenizer = self._activate(target)
        ids = tokenizer.apply_chat_template(request.chat, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLongError(
                f"prompt of {len(ids)} tokens is over the limit of {self.max_prompt_tokens} "
                "(TUNEBRIDGE_MAX_PROMPT_TOKENS); shorten the input"
            )
        if len(ids) + request.max_new_tokens > base.context:
            raise PromptTooLongError(
                f"prompt of {len(ids)} tokens + max_tokens {request.max_new_tokens} exceeds the "
                f"model's context of {base.context} tokens; shorten the input or max_tokens"
            )
        return ids

    @torch.no_grad()
    def generate(
        self,
        target: AdapterBundle,
        requests: list[GenRequest],
        streamer=None,
        gone: list[Callable[[], bool]] | None = None,
    ) -> list[GenResult]:
        """One batch of chats for one target, sharing temperature/top_p/seed (the batcher groups them).
        Each row stops at its own max_new_tokens, or once its `gone` says the caller left; the others go on."""
        with self._lock:
            base, tokenizer = self._activate(target)
            prompts = [self.encode(target, r) for r in requests]
            first = requests[0]
            sampling: dict[str, Any] = {}
            if first.temperature > 0:
                sampling = {"temperature": first.temperature, "top_p": first.top_p}
                if first.seed is not None:
                    torch.manual_seed(first.seed)
            eos = self._stop_ids(base, tokenizer)
            adapters_off = (
                base.model.disable_adapter() if target.adapter_id is None and base.adapters else nullcontext()
            )
            with adapters_off, self._running(base):
                new = padded_generate(
                    base.model,
                    prompts,
                    pad_id=tokenizer.pad_token_id,
                    eos_ids=eos,
                    max_new_tokens=max(r.max_new_tokens for r in requests),
                    device=self.device,
                    streamer=streamer,
                    row_limits=[r.max_new_tokens for r in requests],
                    row_gone=gone,
                    **sampling,
                )
        return [self._result(tokenizer, tokens, r, len(p), eos) for tokens, r, p in zip(new, requests, prompts)]

    @contextmanager
    def using(self, target: AdapterBundle) -> Iterator[tuple[Any, Any, int]]:
        """(model, tokenizer, context length) for the target, held exclusively (for scoring, not generation)."""
        with self._lock:
            base, tokenizer = self._activate(target)
            adapters_off = (
                base.model.disable_adapter() if target.adapter_id is None and base.adapters else nullcontext()
            )
            with adapters_off, self._running(base):
                yield base.model, tokenizer, base.context

    @staticmethod
    def _stop_ids(base: _Base, tokenizer) -> list[int]:
        return stop_ids(base.model, tokenizer)

    @staticmethod
    def _result(tokenizer, tokens: list[int], request: GenRequest, prompt_tokens: int, eos: list[int]) -> GenResult:
        tokens = tokens[: request.max_new_tokens]
        cut = next((i for i, t in enumerate(tokens) if t in eos), None)
        reason = "length"
        if cut is not None:
            tokens, reason = tokens[:cut], "stop"
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        text, hit = apply_stop(text, request.stop)
        if hit:
            reason = "stop"
        return GenResult(text.strip(), reason, prompt_tokens, len(tokens) + (1 if cut is not None else 0))


_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def inference_dtype(device: str, choice: str = "auto") -> str:
    """`choice` ("float32", "bfloat16" or "int8": `backend/models/int8.py`, x86 CPUs, opt-in), or for
    "auto" bf16 on CUDA and on CPUs with bf16 units (Sapphire Rapids, SmolLM2-135M: prefill of 480
    tokens 0.27 s vs 0.81 s in fp32, a decode step 27 vs 42 ms), fp32 elsewhere."""
    if choice not in ("auto", *_TORCH_DTYPES, "int8"):
        raise ValueError(f"inference dtype {choice!r}: expected auto, float32, bfloat16 or int8")
    if choice == "int8" and (device != "cpu" or not int8.supported()):
        raise ValueError(f"inference dtype int8 runs on x86 CPUs only (fbgemm/oneDNN kernels); not on this {device}")
    if choice != "auto":
        return choice
    return "bfloat16" if device == "cuda" or cpu_has_bf16() else "float32"


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut the text at the first stop string (OpenAI semantics: the stop string is not included)."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end an answer: the model's configured EOS (several for some chat models) and the
    tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
