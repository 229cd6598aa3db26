"""Plain chat generation with a base model or base + LoRA adapter (chat template applied), and the
batched generation step the serving pool and training-time validation share.

The schema-constrained extraction engine (extraction.py) builds on these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from backend.models.adapters import find_adapter
from backend.models.loading import default_device, load_tokenizer, resolve_model


@dataclass
class Loaded:
    model: Any  # a transformers model, or a peft model around one
    tokenizer: Any
    base_model: str
    adapter: str | None


def load_for_inference(*, model: str | None = None, adapter: str | None = None, device: str = "auto") -> Loaded:
    """Base weights in fp32 on CPU (bf16 is not faster for decoding there), bf16 on CUDA."""
    from transformers import AutoModelForCausalLM

    device = default_device() if device == "auto" else device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    ref = find_adapter(adapter) if adapter else None
    base_ref = model or (ref.base_model if ref else None)
    path = resolve_model(base_ref)
    tokenizer = load_tokenizer(str(ref.tokenizer_path) if ref and ref.tokenizer_path else path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)  # type: ignore[arg-type]
    if ref is not None:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, str(ref.path))
    lm.eval()
    return Loaded(lm, tokenizer, base_ref or "smollm2-135m", str(ref.path) if ref else None)


@torch.no_grad()
def chat(loaded: Loaded, messages: list[dict[str, str]], *, max_new_tokens: int = 256, temperature: float = 0.0) -> str:
    tok = loaded.tokenizer
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    device = next(loaded.model.parameters()).device
    ids = {k: v.to(device) for k, v in ids.items()}
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    out = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                top_p=None, top_k=None, **sampling)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@torch.no_grad()
def padded_generate(model, prompts: list[list[int]], *, pad_id: int, eos_ids: list[int], max_new_tokens: int,
                    device, streamer=None, temperature: float = 0.0, top_p: float = 1.0,
                    row_limits: list[int] | None = None,
                    row_gone: list[Callable[[], bool]] | None = None) -> list[list[int]]:
    """Generate for several tokenised prompts at once (left-padded); the new tokens of each row.
    Greedy unless `temperature` > 0. The serving pool and training-time validation both use it.

    A row ends at its own `row_limits` entry, or as soon as its `row_gone` says its caller left (timeout,
    disconnect); the others go on, and the call returns once every row has ended."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0
                else {"do_sample": False, "temperature": None, "top_p": None})
    criteria = None
    if row_limits is not None or row_gone is not None:
        criteria = StoppingCriteriaList([_RowsEnd(width, row_limits or [max_new_tokens] * len(prompts),
                                                  row_gone or [lambda: False] * len(prompts))])
    out = model.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad_id, eos_token_id=eos_ids,
                         max_new_tokens=max_new_tokens, top_k=None, streamer=streamer,
                         stopping_criteria=criteria, **sampling)
    return [row[width:].tolist() for row in out]


class _RowsEnd(StoppingCriteria):
    """A per-row stopping rule for `generate`: a row is done at its own token limit or when its caller left."""

    def __init__(self, width: int, limits: list[int], gone: list[Callable[[], bool]]):
        self.width, self.limits, self.gone = width, limits, gone

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        made = input_ids.shape[1] - self.width
        return torch.tensor([made >= limit or gone() for limit, gone in zip(self.limits, self.gone)],
                            dtype=torch.bool, device=input_ids.device)
