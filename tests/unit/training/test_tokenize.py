"""Completion-only labels and honest handling of over-long examples."""

from __future__ import annotations

from backend.models.loading import load_tokenizer
from backend.training.data import Example
from backend.training.tokenize import IGNORE, encode_chat, encode_examples


def test_prompt_tokens_are_masked_and_answers_labelled(tiny_model):
    tok = load_tokenizer(tiny_model)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Total?"},
        {"role": "assistant", "content": "9.00"},
        {"role": "user", "content": "Date?"},
        {"role": "assistant", "content": "25/12/2018"},
    ]
    enc = encode_chat(tok, messages)
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert all(label == IGNORE for label in enc.labels[:n_prompt])
    labelled = [i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE]
    assert all(label in (IGNORE, token) for token, label in zip(enc.input_ids, enc.labels))
    assert tok.decode(labelled) == "9.00<|im_end|>\n25/12/2018<|im_end|>\n"


def test_too_long_examples_are_reported_not_cut(tiny_model):
    tok = load_tokenizer(tiny_model)
    short = Example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "f.jsonl:1", "chat")
    long = Example(
        [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "yo"}], "f.jsonl:2", "chat"
    )
    out = encode_examples(tok, [short, long], max_length=64)
    assert len(out.items) == 1 and out.items[0].origin == "f.jsonl:1"
    assert out.too_long[0][0] == "f.jsonl:2" and out.too_long[0][1] > 64
