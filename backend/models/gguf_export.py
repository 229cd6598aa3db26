"""Write a transformers Llama model and its tokenizer as one GGUF file that llama.cpp and Ollama load.

Written with the `gguf` package's writer, following what llama.cpp's own converter does for Llama:
- tensor names from gguf's `TensorNameMap` (`model.layers.0.self_attn.q_proj.weight` becomes
  `blk.0.attn_q.weight`); a tied output layer is left out, and llama.cpp reuses the embeddings;
- the rows of the q and k projections permuted per head into the rotary layout llama.cpp uses
  (transformers' GGUF loader undoes exactly this permutation);
- 1-D tensors (norms) always float32; the others in the type asked for (`q8_0` quantised with
  gguf's own quantiser, falling back to f16 for a row length that is not a multiple of its block);
- the tokenizer as a byte-level BPE (`gpt2`) vocabulary: tokens in id order with their types,
  merges, the special token ids, whether a BOS is added, and the chat template.

Only the Llama architecture (SmolLM2 and other Llama-shaped models) is supported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import InvalidRequest
from backend.models.modelfile import adds_bos

if TYPE_CHECKING:
    import numpy as np

SUPPORTED_ARCHITECTURES = ("llama",)
OUT_TYPES = ("f32", "f16", "bf16", "q8_0")


class GGUFExportError(InvalidRequest):
    """The model or tokenizer cannot be written as GGUF; the message says what and why."""


def write_gguf(model: Any, tokenizer: Any, path: str | Path, *, out_type: str = "f16", name: str = "") -> Path:
    """Write `model` (a transformers LlamaForCausalLM, any dtype) and `tokenizer` (a fast byte-level BPE
    tokenizer with a chat template) to `path`. `pre` (llama.cpp's name for how text is split before BPE)
    is read from the GGUF the base model was converted from when the model folder records one."""
    import gguf

    config = model.config
    check_supported(config, out_type)
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name or Path(str(getattr(config, "_name_or_path", "") or "model")).name)
    _add_llama_params(writer, config, out_type)
    _add_tokenizer(writer, tokenizer, config, pre=_pre_tokenizer(tokenizer, config))
    for gguf_name, data, qtype in _tensors(model, out_type):
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def check_supported(config: Any, out_type: str = "f16") -> None:
    """Raise GGUFExportError unless a model of this config can be written in `out_type`."""
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise GGUFExportError(
            f"gguf export supports: {', '.join(SUPPORTED_ARCHITECTURES)}; this model is {config.model_type!r}"
        )
    if out_type not in OUT_TYPES:
        raise GGUFExportError(f"gguf type {out_type!r} is not one of {', '.join(OUT_TYPES)}")
    biased = [flag for flag in ("attention_bias", "mlp_bias") if getattr(config, flag, False)]
    if biased:
        raise GGUFExportError(f"gguf export supports Llama models without biases; this one has {', '.join(biased)}")
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type != "default":
        raise GGUFExportError(f"gguf export supports default rotary embeddings only; this model uses {rope_type!r}")


def _file_type(out_type: str) -> int:
    from gguf import LlamaFileType

    return {
        "f32": LlamaFileType.ALL_F32,
        "f16": LlamaFileType.MOSTLY_F16,
        "bf16": LlamaFileType.MOSTLY_BF16,
        "q8_0": LlamaFileType.MOSTLY_Q8_0,
    }[out_type]


def _add_llama_params(writer: Any, config: Any, out_type: str) -> None:
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(_file_type(out_type))
    if out_type == "q8_0":
        writer.add_quantization_version(2)


def permute_heads(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Rotary halves (transformers) to interleaved pairs (llama.cpp), per head, on the output rows."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _tensors(model: Any, out_type: str):
    import gguf
    import torch

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    allowed = set(gguf.MODEL_TENSORS[gguf.MODEL_ARCH.LLAMA])
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp uses token_embd when there is no output tensor
        found = names.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None or found[0] not in allowed:
            raise GGUFExportError(f"tensor {hf_name} has no place in a llama GGUF")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_heads(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_heads(data, n_kv)
        yield (found[1], *_encode(data, out_type))


def _encode(data: np.ndarray, out_type: str) -> tuple[np.ndarray, Any]:
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants

    if data.ndim <= 1 or out_type == "f32":
        return data.astype(np.float32), None
    if out_type == "bf16":
        return quants.quantize(data, GGMLQuantizationType.BF16), GGMLQuantizationType.BF16
    if out_type == "q8_0" and data.shape[-1] % GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0][0] == 0:
        return quants.quantize(data, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return data.astype(np.float16), None


def _tokenizer_json(tokenizer: Any) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GGUFExportError(f"gguf export needs a fast tokenizer; got {type(tokenizer).__name__}")
    spec = json.loads(backend.to_str())
    if spec["model"]["type"] != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise GGUFExportError(
            "gguf export supports byte-level BPE tokenizers (as SmolLM2's); this one is "
            f"{spec['model']['type']} with a {(spec.get('decoder') or {}).get('type')} decoder"
        )
    return spec


def _pre_tokenizer(tokenizer: Any, config: Any) -> str:
    """llama.cpp's name for the split before BPE: the source GGUF's when the base came from one,
    else `gpt-2` (llama.cpp spells it so) for GPT-2's split (a plain byte-level pre-tokenizer)."""
    source = Path(str(getattr(config, "_name_or_path", ""))) / "tunebridge_source.json"
    if source.is_file():
        from gguf import GGUFReader

        original = Path(json.loads(source.read_text())["gguf"])
        if original.is_file():
            field = GGUFReader(original).fields.get("tokenizer.ggml.pre")
            if field is not None:
                return str(field.contents())
    pre = _tokenizer_json(tokenizer).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    raise GGUFExportError(
        f"gguf export cannot name this tokenizer's pre-tokenizer for llama.cpp: {json.dumps(pre)[:200]}"
    )


def _add_tokenizer(writer: Any, tokenizer: Any, config: Any, *, pre: str) -> None:
    from gguf import TokenType

    spec = _tokenizer_json(tokenizer)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    size = max(config.vocab_size, len(by_id))
    tokens, types = [], []
    for index in range(size):
        if index not in by_id:  # the embedding matrix is larger than the vocabulary
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for token_id, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(adds_bos(tokenizer))
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
