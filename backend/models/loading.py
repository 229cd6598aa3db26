"""Find a base model, convert it once if it is a GGUF file, and load it for training or inference.

A model reference is one of, tried in this order:
1. a bundled name (`smollm2-135m`, the default; `gemma3-270m` when its package is installed),
2. a local path: a transformers model folder, or a `.gguf` file,
3. a Hugging Face hub id that is already in the local cache (works with `HF_HUB_OFFLINE=1`).
GGUF files are dequantised by transformers and saved once as a safetensors folder in the cache,
so later loads take well under a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from backend.models.bundled import BUNDLED, DEFAULT_MODEL, BundledModel
from backend.paths import cache_dir

log = logging.getLogger(__name__)

Quantize = Literal["none", "4bit", "int8"]  # int8: the frozen base quantized after LoRA is attached (runtime.py)

# Used for base models whose tokenizer has no chat template (and by tiny test models): SmolLM2's format.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelNotFoundError(FileNotFoundError):
    """No model matched the reference; the message lists every place that was tried."""


def resolve_model(ref: str | None = None) -> str:
    """Return a local folder (or an id transformers can load) for `ref`, converting GGUF once."""
    ref = (ref or DEFAULT_MODEL).strip()
    tried: list[str] = []
    if ref in BUNDLED:
        bundled = BUNDLED[ref]
        target = cache_dir() / "models" / ref
        if _is_model_folder(target):
            return str(target)
        try:
            gguf = bundled.locate(bundled)
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"bundled model {ref!r} is unavailable: {exc}") from exc
        _convert_gguf(gguf, target, bundled=bundled)
        return str(target)
    tried.append(f"bundled names {sorted(BUNDLED)}")

    path = Path(ref).expanduser()
    if path.is_dir():
        if _is_model_folder(path):
            return str(path.resolve())
        raise ModelNotFoundError(f"{path} is a folder but has no config.json: not a transformers model")
    if path.is_file() and path.suffix == ".gguf":
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        target = cache_dir() / "models" / f"gguf-{path.stem}-{key}"
        if not _is_model_folder(target):
            _convert_gguf(path, target)
        return str(target)
    tried.append(f"local path {path.resolve()} (not found)")

    if "/" in ref and not ref.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(repo_id=ref, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any miss means "not cached"
            tried.append(f"Hugging Face cache for {ref!r} ({type(exc).__name__}: not cached)")
    raise ModelNotFoundError(f"model {ref!r} not found; tried: " + "; ".join(tried))


def load_tokenizer(model_path: str, *, chat_template: str | None = None):
    """`chat_template` (template text, backend/models/chat_templates.py) replaces the model's own."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    elif not tokenizer.chat_template:
        # Base (not instruction-tuned) models may ship without one; fine-tuning teaches this one.
        log.warning("tokenizer of %s has no chat template; using ChatML", model_path)
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 matmuls natively and torch uses those kernels (`hardware.py`)."""
    from backend.models.hardware import compute_path, cpu_kind

    return compute_path(cpu_kind()).dtype == "bf16"


def load_model(model_path: str, *, device: str, compute_dtype, quantize: Quantize = "none", quant_storage=None):
    """Load a causal LM. Frozen base weights are stored in `compute_dtype` (no cast per step)
    unless quantised, in which case bitsandbytes holds them in 4-bit NF4 (QLoRA); `quant_storage`
    (FSDP) packs those 4-bit weights into tensors of that dtype so FSDP can flatten them with the rest."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": compute_dtype}
    if quantize == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            **({"bnb_4bit_quant_storage": quant_storage} if quant_storage is not None else {}),
        )
    if quantize != "none":
        kwargs["device_map"] = {"": device if device != "cuda" else torch.cuda.current_device()}  # a rank's own GPU
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if quantize == "none":
        model.to(device)  # type: ignore[arg-type]  # transformers' @wraps(Module.to) types `self` as the 1st arg
    if quantize == "4bit" and device == "cpu":
        # bitsandbytes 0.50.2 on AVX512-BF16 CPUs repacks 4-bit weights after a no-grad forward,
        # after which backward passes get wrong gradients. Disabling that path keeps them correct.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False  # type: ignore[assignment]  # torch: Tensor|Module
    model.config.use_cache = False
    return model


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, target: Path, *, bundled: BundledModel | None = None) -> None:
    """Dequantise a GGUF file with transformers and save it (weights, tokenizer, chat template)."""
    with _file_lock(target.with_name(f".{target.name}.lock")):
        if _is_model_folder(target):  # another process finished while we waited
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.warning("converting %s to safetensors in %s (once; about 30 s)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained until its quantisation config is removed.
        if (quantizer := getattr(model, "hf_quantizer", None)) is not None:
            quantizer.remove_quantization_config(model)
        if bundled is not None and bundled.chat_template and not tokenizer.chat_template:
            tokenizer.chat_template = bundled.chat_template
        if bundled is not None and bundled.end_of_turn:
            stop = tokenizer.convert_tokens_to_ids(bundled.end_of_turn)
            eos = model.generation_config.eos_token_id
            model.generation_config.eos_token_id = sorted({stop, *(eos if isinstance(eos, list) else [eos])})
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tunebridge_source.json").write_text(json.dumps({"gguf": str(gguf)}, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
