"""The prompt tokens every example of a step starts with are read once (backend/training/steps.py
`SharedPrefix`): the loss and the gradient equal those of reading every row whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from backend.training.batching import by_tokens
from backend.training.runtime import Runtime
from backend.training.steps import MIN_PREFIX, AnswerLoss, optimizer_step, recompute_share, shared_length
from backend.training.tokenize import IGNORE, Encoded
from backend.training.trainer import train

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
PROMPT = list(range(3, 3 + 40))  # the instructions every example starts with


def _example(i: int, body: int, answer: int) -> Encoded:
    ids = PROMPT + [50 + (i * 7 + k) % 40 for k in range(body)] + [100 + (i + k) % 20 for k in range(answer)]
    labels = [IGNORE] * (len(PROMPT) + body) + ids[len(PROMPT) + body :]
    return Encoded(ids, labels, f"row{i}")


def _grads(
    model_dir: str, micro: list[list[Encoded]], *, share: bool, max_tokens: int = 0, recomputed: int | None = None
) -> tuple[float, dict]:
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.train()  # as training holds it (no dropout in these adapters: the same numbers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)  # a step that changes nothing: the gradients are read after it
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        p.register_post_accumulate_grad_hook(lambda p, n=n: seen.__setitem__(n, p.grad.clone()))
        for n, p in model.named_parameters()
        if p.requires_grad
    ]
    result = optimizer_step(
        micro,
        forward=AnswerLoss(model),
        runtime=Runtime("cpu", torch.float32, "none"),
        pad_id=0,
        params=params,
        optimizer=optimizer,
        scheduler=scheduler,
        max_grad_norm=0.0,
        max_tokens=max_tokens,
        share_prefix=share,
    )
    for h in hooks:
        h.remove()
    assert result["prefix_tokens"] == (len(PROMPT) if share else 0)
    if recomputed is not None:
        assert result["recomputed_passes"] == recomputed
    return result["loss"], seen


def test_shared_length_stops_before_the_first_difference_and_the_first_answer():
    rows = [_example(i, body=10 + i, answer=5) for i in range(3)]
    assert shared_length(rows) == len(PROMPT)  # the bodies differ from their first token
    same = [Encoded(PROMPT + [60, 61, 62], [IGNORE] * 41 + [61, 62], "a")] * 2
    assert shared_length(same) == 40  # identical rows: up to the token before the first answer token
    assert shared_length(rows[:1]) == 0  # one row shares nothing with itself worth reading apart
    short = [
        Encoded(e.input_ids[: MIN_PREFIX - 1] + [99, 98], [IGNORE] * (MIN_PREFIX - 1) + [99, 98], "s") for e in rows
    ]
    assert shared_length(short) == 0


def test_passes_are_sized_without_the_shared_tokens():
    rows = [_example(i, body=20, answer=5) for i in range(4)]  # 65 tokens each, 40 shared
    assert [len(p) for p in by_tokens(rows, 100)] == [1, 1, 1, 1]
    assert [len(p) for p in by_tokens(rows, 100, skip=40)] == [4]


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory) -> str:
    """A tiny Gemma 3: one sliding-window layer (a window shorter than the shared prompt) and one full."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=160,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=12,
        layer_types=["sliding_attention", "full_attention"],
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gemma") / "model"
    Gemma3ForCausalLM(config).save_pretrained(path)
    return str(path)


# one pass; passes of a row or two; rows longer than the budget alone (recomputed in the backward)
@pytest.mark.parametrize("max_tokens, long_rows", [(0, 0), (120, 0), (16, 3)])
@pytest.mark.parametrize("model", ["tiny_model", "tiny_gemma"])
def test_the_gradient_is_the_gradient_of_whole_rows(request, model, max_tokens, long_rows):
    model_dir = request.getfixturevalue(model)
    micro = [[_example(i, body=8 + 3 * i, answer=6) for i in range(4)], [_example(9, body=5, answer=4)]]
    whole_loss, whole = _grads(model_dir, micro, share=False)
    shared_loss, shared = _grads(model_dir, micro, share=True, max_tokens=max_tokens, recomputed=long_rows)
    assert shared_loss == pytest.approx(whole_loss, rel=1e-5)
    assert set(shared) == set(whole) and len(whole) > 10
    for name, grad in whole.items():
        assert torch.allclose(shared[name], grad, rtol=1e-4, atol=1e-6), name
    # the prefix's own weights are reached only through its keys and values: still the same gradient
    assert any(g.abs().sum() > 0 for n, g in shared.items() if "layers.0." in n)


def test_a_pass_over_budget_recomputes_the_share_of_layers_its_excess_needs():
    row = _example(1, body=100, answer=20)
    n = len(row.input_ids)
    assert recompute_share([row], n) == 0.0
    assert recompute_share([row], int(n * 0.9)) == pytest.approx(0.1, abs=0.01)
    assert recompute_share([row], n // 4) == pytest.approx(0.75, abs=0.01)
    assert recompute_share([row, row], n) == pytest.approx(0.5)  # rows x longest row
    assert recompute_share([row], 0) == 1.0


def test_a_recomputed_pass_keeps_fewer_activations_for_the_same_gradient(tiny_model):
    """Activation checkpointing of a long row: what the forward saves for the backward shrinks to the
    recomputed layers' inputs (half of the layers: about half of it), and the loss and gradient stay
    those of the plain pass."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, torch_dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.train()
    loss_fn = AnswerLoss(model)
    row = _example(1, body=120, answer=20)
    ids, labels = torch.tensor([row.input_ids]), torch.tensor([row.labels])

    def run(recompute: float) -> tuple[float, int, list[torch.Tensor]]:
        saved: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            if recompute:
                with loss_fn.recomputing(recompute):
                    assert sum(getattr(m, "gradient_checkpointing", False) for m in model.modules()) == (
                        1 if recompute <= 0.5 else 2
                    )
                    loss = loss_fn(ids, labels)
            else:
                loss = loss_fn(ids, labels)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        model.zero_grad(set_to_none=True)
        return loss.item(), sum(saved), grads

    plain_loss, plain_bytes, plain = run(0.0)
    kept = {}
    for share in (0.5, 1.0):
        loss, kept[share], grads = run(share)
        assert loss == pytest.approx(plain_loss, rel=1e-6)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(grads, plain))
    assert kept[1.0] < plain_bytes / 2 < kept[0.5] < plain_bytes, (kept, plain_bytes)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())  # off again after


def test_a_run_sharing_the_prefix_learns_as_one_that_does_not(tiny_config):
    kwargs = dict(data=[str(EXAMPLES / "receipts.jsonl")], max_steps=3, batch_size=4, learning_rate=1e-2)
    apart = train(tiny_config(run_name="apart", share_prefix=False, **kwargs), progress_bar=False)
    once = train(tiny_config(run_name="once", **kwargs), progress_bar=False)

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "loss" in line]

    assert losses(once.run_dir) == pytest.approx(losses(apart.run_dir), rel=1e-4)
