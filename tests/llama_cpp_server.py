"""llama.cpp's own server on an exported GGUF, started in this process (the `xllamacpp` wheel: llama.cpp
built for CPU) and asked over HTTP on 127.0.0.1; tests that need it skip without it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest


class LlamaServer:
    def __init__(self, gguf: str | Path, lora: str | Path | None = None):
        xllamacpp = pytest.importorskip("xllamacpp", reason="xllamacpp (llama.cpp for Python) is not installed")
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = 512
        params.n_parallel = 1
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
        params.warmup = False
        params.use_jinja = True  # render the chat template the GGUF carries
        if lora is not None:
            params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 1.0)]
        self.server = xllamacpp.Server(params)  # keeps serving while this object lives
        self.http = httpx.Client(base_url=str(self.server.listening_address), timeout=60, trust_env=False)

    def tokenize(self, text: str) -> list[int]:
        """Its tokens for `text`, special tokens recognised, no BOS added."""
        body = {"content": text, "add_special": False, "parse_special": True}
        return self.http.post("/tokenize", json=body).raise_for_status().json()["tokens"]

    def apply_template(self, messages: list[dict[str, str]]) -> str:
        """Its rendering of the GGUF's chat template, generation prompt included."""
        return self.http.post("/apply-template", json={"messages": messages}).raise_for_status().json()["prompt"]

    def greedy(self, prompt: list[int], n: int) -> list[int]:
        """The ids of up to `n` new tokens, greedily; it stops before an end-of-generation token."""
        body = {"prompt": prompt, "n_predict": n, "temperature": 0, "return_tokens": True, "cache_prompt": False}
        return self.http.post("/completion", json=body).raise_for_status().json()["tokens"]
