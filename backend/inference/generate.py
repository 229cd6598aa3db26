"""The batched generation step the serving pool (`pool.py`) and training-time validation share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


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
