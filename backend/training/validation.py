"""Extraction metrics on the validation split while training (not only loss).

At each evaluation the model answers the first `eval_examples` validation extraction records with
the training prompt (greedy, batched) and the answers are scored by `backend/evaluation/metrics.py`,
the same code `tunebridge eval` and eval jobs use. The trainer keeps the adapter of the best
evaluation by the chosen metric (`eval_metric`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from backend.inference.generate import padded_generate
from backend.scoring.metrics import score_document, summarize
from backend.training.data import Example

HIGHER_IS_BETTER = {"micro_f1": True, "val_loss": False}


class EvaluationStopped(Exception):
    """The run was asked to stop while its evaluation was generating."""


class ExtractionCheck:
    def __init__(self, examples: list[Example], *, schema: list[str], tokenizer, limit: int, batch_size: int = 8):
        self.examples = [e for e in examples if e.format == "extraction"][:limit]
        self.schema, self.tokenizer, self.batch_size = schema, tokenizer, batch_size
        self.max_new_tokens = min(512, 48 * max(1, len(schema)) + 32)
        self.prompts = [list(self._ids(e)) for e in self.examples]

    def _ids(self, example: Example) -> list[int]:
        out = self.tokenizer.apply_chat_template(example.messages[:-1], add_generation_prompt=True, tokenize=True)
        return out["input_ids"] if hasattr(out, "keys") else out

    def __bool__(self) -> bool:
        return bool(self.examples)

    @torch.no_grad()
    def run(self, model, runtime, *, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        eos = model.generation_config.eos_token_id
        eos_ids = sorted(
            {*(eos if isinstance(eos, list) else [eos] if eos is not None else []), self.tokenizer.eos_token_id}
            - {None}
        )
        order = sorted(range(len(self.prompts)), key=lambda i: len(self.prompts[i]))
        raws: dict[int, str] = {}
        for start in range(0, len(order), self.batch_size):
            if should_stop is not None and should_stop():
                model.train(was_training)
                raise EvaluationStopped(f"stopped after {start} of {len(order)} evaluation answers")
            chunk = order[start : start + self.batch_size]
            with runtime.autocast():
                new = padded_generate(
                    model,
                    [self.prompts[i] for i in chunk],
                    pad_id=self.tokenizer.pad_token_id,
                    eos_ids=eos_ids,
                    max_new_tokens=self.max_new_tokens,
                    device=runtime.device,
                )
            for i, tokens in zip(chunk, new):
                cut = next((k for k, t in enumerate(tokens) if t in eos_ids), len(tokens))
                raws[i] = self.tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()
        model.train(was_training)
        docs = [
            score_document(i, raws[i], cast(dict, e.record)["fields"], self.schema, cast(dict, e.record)["text"])
            for i, e in enumerate(self.examples)
        ]
        s = summarize(docs, self.schema)
        return {
            "micro_f1": s["micro"]["f1"],
            "exact_match": s["exact_match"],
            "json_valid": s["json_valid"],
            "schema_valid": s["schema_valid"],
            "fields": {f: v["f1"] for f, v in s["fields"].items()},
        }
