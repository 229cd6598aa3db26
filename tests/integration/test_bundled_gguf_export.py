"""GGUF export of the real bundled SmolLM2: checked against the GGUF llama.cpp's own converter wrote
(the file the bundled model comes from), loaded back in transformers, and run by llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.models import load_tokenizer, resolve_model
from backend.models.bundled import BUNDLED
from backend.models.gguf_export import write_gguf

pytestmark = pytest.mark.slow


def test_smollm2_exports_as_llama_cpp_writes_it_and_answers_alike_in_f16(tmp_path):
    from gguf import GGUFReader, dequantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    write_gguf(model, tokenizer, tmp_path / "model.gguf", out_type="f16")

    # Every model and tokenizer key llama.cpp wrote, with the same value, and no other.
    reference = GGUFReader(BUNDLED["smollm2-135m"].locate(BUNDLED["smollm2-135m"]))
    ours = GGUFReader(tmp_path / "model.gguf")
    keys = {k for k in reference.fields if not k.startswith(("GGUF.", "general."))}
    assert keys == {k for k in ours.fields if not k.startswith(("GGUF.", "general."))}
    for key in keys:
        assert ours.fields[key].contents() == reference.fields[key].contents(), key
    # The same tensors, names and layout (q/k permutation included): its values rounded to f16.
    theirs = {t.name: t for t in reference.tensors}
    assert sorted(theirs) == sorted(t.name for t in ours.tensors)
    for tensor in ours.tensors:
        expected = dequantize(theirs[tensor.name].data, theirs[tensor.name].tensor_type)
        if expected.ndim > 1:
            expected = expected.astype(np.float16).astype(np.float32)
        assert np.array_equal(dequantize(tensor.data, tensor.tensor_type), expected), tensor.name

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="model.gguf").eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file="model.gguf")
    for prompt in ["What is the capital of France?", "Write the total of a receipt of 3 items at 2.50 each."]:
        chat = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert loaded_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == text
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        assert loaded_tokenizer(text)["input_ids"] == ids[0].tolist()
        with torch.no_grad():
            expected = model.generate(ids, max_new_tokens=12, do_sample=False)
            assert torch.equal(loaded.generate(ids, max_new_tokens=12, do_sample=False), expected), prompt


def test_llama_cpp_runs_the_smollm2_export_as_transformers_runs_the_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from llama_cpp_server import LlamaServer

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    write_gguf(model, tokenizer, tmp_path / "model.gguf", out_type="f16")
    llama = LlamaServer(tmp_path / "model.gguf")
    for prompt in ["What is the capital of France?", "Write the total of a receipt of 3 items at 2.50 each."]:
        chat = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert llama.apply_template(chat) == text  # SmolLM2's default system prompt included
        ids = tokenizer(text)["input_ids"]
        assert llama.tokenize(text) == ids
        with torch.no_grad():
            expected = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()
        got = llama.greedy(ids, 12)
        assert got == expected[: len(got)] and (
            len(got) == len(expected) or expected[len(got)] == tokenizer.eos_token_id
        )
