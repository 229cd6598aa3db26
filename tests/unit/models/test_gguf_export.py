"""GGUF export on a tiny random Llama: it loads back in transformers and answers exactly like the merged
model; the Modelfile's template renders exactly as the tokenizer's chat template."""

from __future__ import annotations

import pytest
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backend.cli import main as cli_main
from backend.models.adapters import find_adapter
from backend.models.bundled import BUNDLED, GEMMA_TEMPLATE
from backend.models.gguf_export import GGUFExportError, write_gguf
from backend.models.loading import CHATML_TEMPLATE
from backend.models.modelfile import PROBES, ChatFormatError, chat_format, ollama_messages, render_go_template
from backend.training.merge import load_merged
from backend.training.trainer import train
from conftest import EXAMPLES, SECRET_Q

PROMPTS = [SECRET_Q, "TOTAL 9.00 RM", "What is the date on this receipt?"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    from backend.training.config import TrainConfig

    config = TrainConfig(
        model=tiny_model,
        data=[str(EXAMPLES / "chat.jsonl")],
        output_dir=str(tmp_path_factory.mktemp("gguf-runs")),
        max_steps=4,
        learning_rate=1e-2,
        report_to="none",
        save_every=0,
        val_fraction=0.0,
        batch_size=2,
        precision="fp32",
        threads=1,
    )
    run = train(config, progress_bar=False).run_dir
    merged, tokenizer = load_merged(find_adapter(run))
    return run, merged.eval(), tokenizer


def _load_gguf(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf").eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file="model.gguf")


def _greedy(model, tokenizer, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


def test_f32_gguf_answers_exactly_like_the_merged_model(trained, tmp_path):
    run, merged, tokenizer = trained
    out = tmp_path / "gguf"
    assert cli_main(["export", "--adapter", str(run), "--format", "gguf", "--type", "f32", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "model.gguf", "tunebridge.json"]
    model, gguf_tokenizer = _load_gguf(out)
    for name, tensor in merged.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    for prompt in PROMPTS:
        chat = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert gguf_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == text
        assert gguf_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert _greedy(model, gguf_tokenizer, prompt) == _greedy(merged, tokenizer, prompt)


def test_llama_cpp_tokenizes_templates_and_answers_the_f32_gguf_like_the_merged_model(trained, tmp_path):
    from llama_cpp_server import LlamaServer

    _, merged, tokenizer = trained
    write_gguf(merged, tokenizer, tmp_path / "model.gguf", out_type="f32")
    llama = LlamaServer(tmp_path / "model.gguf")
    for prompt in PROMPTS:
        chat = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert llama.apply_template(chat) == text
        ids = tokenizer(text)["input_ids"]
        assert llama.tokenize(text) == ids
        expected = _greedy(merged, tokenizer, prompt)
        got = llama.greedy(ids, len(expected))
        assert got == expected[: len(got)], prompt
        assert len(got) == len(expected) or expected[len(got)] == tokenizer.eos_token_id


def test_a_gguf_lora_on_the_base_gguf_answers_in_llama_cpp_like_the_merged_model(trained, tmp_path):
    from gguf import GGUFReader

    run, merged, tokenizer = trained
    out = tmp_path / "lora"
    assert cli_main(["export", "--adapter", str(run), "--format", "gguf-lora", "--type", "f32", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "adapter.gguf", "base.gguf", "tunebridge.json"]
    assert "FROM ./base.gguf\nADAPTER ./adapter.gguf\n" in (out / "Modelfile").read_text()
    fields = GGUFReader(out / "adapter.gguf").fields
    assert fields["general.type"].contents() == "adapter" and fields["adapter.type"].contents() == "lora"
    assert fields["adapter.lora.alpha"].contents() == 32.0  # llama.cpp scales by alpha / rank, as PEFT does

    from llama_cpp_server import LlamaServer

    llama = LlamaServer(out / "base.gguf", lora=out / "adapter.gguf")
    for prompt in PROMPTS:
        chat = [{"role": "user", "content": prompt}]
        ids = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))["input_ids"]
        expected = _greedy(merged, tokenizer, prompt)
        got = llama.greedy(ids, len(expected))
        assert got == expected[: len(got)], prompt
        assert len(got) == len(expected) or expected[len(got)] == tokenizer.eos_token_id


def test_a_gguf_lora_holds_plain_lora_only(trained, tmp_path, capsys):
    import json
    import shutil

    run, _, _ = trained
    adapter = shutil.copytree(run / "adapter", tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    argv = ["export", "--adapter", str(adapter), "--format", "gguf-lora", "--out", str(tmp_path / "out")]
    assert cli_main(argv) == 2
    assert "a GGUF LoRA adapter holds plain LoRA only; this adapter uses use_dora" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_f16_gguf_holds_the_merged_weights_rounded_to_f16_and_answers_alike(trained, tmp_path):
    _, merged, tokenizer = trained
    write_gguf(merged, tokenizer, tmp_path / "model.gguf", out_type="f16")
    model, gguf_tokenizer = _load_gguf(tmp_path)
    for name, tensor in merged.state_dict().items():
        expected = tensor if tensor.ndim == 1 else tensor.half().float()  # norms stay f32
        assert torch.equal(model.state_dict()[name], expected), name
    for prompt in PROMPTS:
        assert _greedy(model, gguf_tokenizer, prompt) == _greedy(merged, tokenizer, prompt)


def test_q8_0_gguf_quantises_matrices_and_keeps_norms_f32(trained, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader

    _, merged, tokenizer = trained
    write_gguf(merged, tokenizer, tmp_path / "model.gguf", out_type="q8_0")
    types = {t.name: t.tensor_type for t in GGUFReader(tmp_path / "model.gguf").tensors}
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd
    model, _ = _load_gguf(tmp_path)
    for name, tensor in merged.state_dict().items():  # 8 bits per weight, one scale per 32
        assert (model.state_dict()[name] - tensor).abs().max() <= tensor.abs().max() / 127 + 1e-6, name


def test_the_modelfile_template_renders_as_the_chat_template(trained, tmp_path):
    run, _, tokenizer = trained
    out = tmp_path / "gguf"
    assert cli_main(["export", "--adapter", str(run), "--format", "gguf", "--out", str(out)]) == 0
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("# Ollama") and "FROM ./model.gguf\n" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "SYSTEM" not in modelfile
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    for messages in PROBES:
        assert render_go_template(template, messages) == tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )


def test_the_go_renderer_renders_as_ollama():
    chatml = chat_format(_Tokenizer(CHATML_TEMPLATE))
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    assert render_go_template(chatml.template, messages) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_go_template(chatml.template, []) == "<|im_start|>assistant\n"
    for template, error in [
        ("{{ .Prompt }}", "unsupported"),
        ('{{ if eq .Role "x" }}{{ end }}', "outside range"),
        ("{{ range .Messages }}", "without {{ end }}"),
    ]:
        with pytest.raises(ValueError, match=error):
            render_go_template(template, [{"role": "user", "content": "hi"}])


def test_smollm2s_default_system_prompt_becomes_the_modelfile_system():
    from gguf import GGUFReader

    try:
        path = BUNDLED["smollm2-135m"].locate(BUNDLED["smollm2-135m"])
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    template = GGUFReader(path).fields["tokenizer.chat_template"].contents()
    tokenizer = _Tokenizer(template, bos="<|im_start|>", eos="<|im_end|>")
    fmt = chat_format(tokenizer)
    assert fmt.name == "chatml" and fmt.stops == ("<|im_end|>",)
    assert fmt.system and "SmolLM" in fmt.system
    for messages in PROBES:
        assert render_go_template(fmt.template, ollama_messages(messages, fmt.system)) == tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )


def test_gemma_turns_stop_at_end_of_turn_and_leave_bos_to_llama_cpp():
    tokenizer = _Tokenizer(GEMMA_TEMPLATE, bos="<bos>", eos="<eos>", adds_bos=True)
    fmt = chat_format(tokenizer)
    assert fmt.name == "gemma" and fmt.stops == ("<end_of_turn>", "<eos>") and fmt.system is None
    for messages in PROBES:
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert "<bos>" + render_go_template(fmt.template, messages) == expected


def test_a_chat_template_of_another_shape_is_refused_with_what_it_renders():
    with pytest.raises(ChatFormatError, match="renders a user message as 'What is the total\\?'"):
        chat_format(_Tokenizer("{{ messages[-1].content }}"))


def test_only_llama_models_export_to_gguf(tmp_path, trained):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    _, _, tokenizer = trained
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    with pytest.raises(GGUFExportError, match="gguf export supports: llama; this model is 'gemma3_text'"):
        write_gguf(Gemma3ForCausalLM(config), tokenizer, tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_an_untied_output_layer_and_a_wider_head_load_back_alike(trained, tmp_path):
    from transformers import LlamaForCausalLM

    _, merged, tokenizer = trained
    config = merged.config.__class__(**{**merged.config.to_dict(), "tie_word_embeddings": False, "head_dim": 32})
    torch.manual_seed(1)
    model = LlamaForCausalLM(config).eval()
    write_gguf(model, tokenizer, tmp_path / "model.gguf", out_type="f32")
    loaded, _ = _load_gguf(tmp_path)
    assert not loaded.config.tie_word_embeddings and loaded.config.head_dim == 32
    ids = tokenizer("TOTAL 9.00 RM", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_biases_are_refused_by_name(trained, tmp_path):
    from transformers import LlamaForCausalLM

    _, merged, tokenizer = trained
    config = merged.config.__class__(**{**merged.config.to_dict(), "attention_bias": True})
    with pytest.raises(GGUFExportError, match="without biases; this one has attention_bias"):
        write_gguf(LlamaForCausalLM(config), tokenizer, tmp_path / "model.gguf")


def test_label_memory_and_type_go_with_their_formats_only(trained, tmp_path, capsys):
    run, _, _ = trained
    argv = ["export", "--adapter", str(run), "--format", "gguf", "--include-label-memory", "--out", str(tmp_path)]
    assert cli_main(argv) == 2
    assert "--include-label-memory goes with --format adapter, not gguf" in capsys.readouterr().err
    assert cli_main(["export", "--adapter", str(run), "--type", "q8_0", "--out", str(tmp_path)]) == 2
    assert "--type goes with --format gguf or gguf-lora, not adapter" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


class _Tokenizer:
    """Just what chat_format reads from a tokenizer: a Jinja chat template and the BOS/EOS tokens."""

    def __init__(self, template: str, *, bos: str | None = None, eos: str | None = None, adds_bos: bool = False):
        self.chat_template, self.bos_token, self.eos_token = template, bos, eos
        self.bos_token_id = 1 if bos else None
        self._adds_bos = adds_bos

    def __call__(self, text: str) -> dict:
        return {"input_ids": ([1] if self._adds_bos else []) + [5]}

    def apply_chat_template(self, messages, *, tokenize: bool, add_generation_prompt: bool) -> str:
        assert not tokenize
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token or ""
        )
