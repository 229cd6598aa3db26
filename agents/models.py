"""The model behind the graph, injected: tunebridge's engine in this process, the service's batcher (inside
the service), the tunebridge service over HTTP, or any OpenAI-compatible server (vLLM, Ollama) by base URL. Tests inject a scripted one.

Every model answers two questions: `extract` (fields of a document under a schema, with per-field
confidence and grounding spans) and `explain` (a short rationale for a decision already taken,
from the decision and its reasons only — the document's text never reaches it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from backend.errors import Upstream
from backend.inference.grounding import ground

EXPLAIN_SYSTEM = (
    "You explain decisions on financial documents to an analyst in one or two plain sentences. "
    "Use only the facts given."
)


@dataclass
class Extraction:
    fields: dict[str, Any]
    confidence: dict[str, float | None]  # per top-level field (None: the model gives no probabilities)
    grounding: dict[str, Any]  # per leaf path: {start, end, match, score} or None (not in the document)
    raw: str = ""
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    calibrated: bool = False  # the confidences were calibrated on held-out answers (an adapter's calibration.json)
    automation: dict[str, str] | None = None  # per field "auto" | "review" (an adapter's thresholds.json)


class Model(Protocol):
    name: str

    def extract(
        self, text: str, schema: type[BaseModel] | dict[str, Any], *, notes: list[str] | None = None
    ) -> Extraction: ...

    def explain(self, doc_type: str, decision: str, reasons: list[str]) -> str: ...


def spec_of(schema: type[BaseModel] | dict[str, Any]):
    """The extraction spec of an agents' schema (a pydantic model or a JSON Schema object), built once
    per distinct schema (`backend/inference/spec.py`)."""
    from backend.inference.spec import ExtractionSpec

    return ExtractionSpec.of(schema)


def with_notes(text: str, notes: list[str] | None) -> str:
    """The repair loop's re-ask: the document, then what was wrong with the previous answer."""
    if not notes:
        return text
    return text + "\n\nThe previous answer had these problems; correct them:\n" + "\n".join(f"- {n}" for n in notes)


def explain_messages(doc_type: str, decision: str, reasons: list[str]) -> list[dict[str, str]]:
    facts = "\n".join(f"- {r}" for r in reasons) or "- (no facts were given)"
    return [
        {"role": "system", "content": EXPLAIN_SYSTEM},
        {
            "role": "user",
            "content": f"Document type: {doc_type}\nDecision: {decision}\nReasons:\n{facts}\n\nExplain the decision.",
        },
    ]


class EngineModel:
    """tunebridge's constrained extraction engine in this process (base model or base + adapter)."""

    def __init__(
        self,
        *,
        adapter: str | None = None,
        model: str | None = None,
        device: str = "auto",
        max_new_tokens: int = 160,
        answer_tokens: int = 768,
        rank: str | Literal[False] | None = None,
    ):
        from backend import cores
        from backend.inference.bundle import AdapterBundle
        from backend.inference.pool import ModelPool

        if cores.current() is None:
            cores.claim("agents")  # its share of the cores, beside other tunebridge processes
        self.pool = ModelPool(device=device)
        if adapter:
            self.target = AdapterBundle.of_folder(adapter, base=model, label=adapter)
        else:
            self.target = AdapterBundle(model or "smollm2-135m")
        self.name = self.target.label
        self.max_new_tokens = max_new_tokens  # of an explanation
        self.answer_tokens = answer_tokens  # of an extraction: an invoice with 20 line items fits
        self.rank = rank  # candidate ranking after decoding (backend/inference/ranking.py); None: its default

    def extract(self, text, schema, *, notes=None) -> Extraction:
        from backend.inference.extraction import extract

        out = extract(
            self.pool,
            self.target,
            text=with_notes(text, notes),
            spec=spec_of(schema),
            max_new_tokens=self.answer_tokens,
            rank=self.rank,
        )
        return Extraction(
            out["fields"],
            out["confidence"],
            ground(out["fields"], text),
            out["raw"],
            self.name,
            {"usage": out["usage"]},
            calibrated=bool(out.get("calibrated")),
            automation=out.get("automation"),
        )

    def explain(self, doc_type, decision, reasons) -> str:
        from backend.inference.pool import GenRequest

        request = GenRequest(
            tuple((m["role"], m["content"]) for m in explain_messages(doc_type, decision, reasons)),
            max_new_tokens=self.max_new_tokens,
        )
        return self.pool.generate(self.target, [request])[0].text


class BatcherModel:
    """The service's batcher (constrained extraction batched with concurrent requests, short
    explanations): what the service's `/v1/documents` runs the graph on."""

    def __init__(self, batcher, target, *, limit: int, answer_tokens: int = 768):
        self.batcher, self.target, self.limit, self.answer_tokens = batcher, target, limit, answer_tokens
        self.name = target.label

    def extract(self, text, schema, *, notes=None) -> Extraction:
        from backend.inference.extraction import Document

        doc = Document(with_notes(text, notes), spec_of(schema), self.answer_tokens)
        out = self.batcher.extract(self.target, doc, limit=self.limit, review_confidence=0.0)
        return Extraction(
            out["fields"],
            out["confidence"],
            ground(out["fields"], text),
            out["raw"],
            self.name,
            calibrated=bool(out.get("calibrated")),
            automation=out.get("automation"),
        )

    def explain(self, doc_type, decision, reasons) -> str:
        from backend.inference.pool import GenRequest

        messages = explain_messages(doc_type, decision, reasons)
        request = GenRequest(tuple((m["role"], m["content"]) for m in messages), max_new_tokens=96)
        return self.batcher.generate(self.target, request).text


class ServiceModel:
    """The tunebridge service: `/v1/extract` (constrained, with confidence) and `/v1/chat/completions`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 600,
        rank: str | Literal[False] | None = None,
    ):
        import httpx

        self.name = model or "default"
        self.model, self.rank = model, rank
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        )

    def extract(self, text, schema, *, notes=None) -> Extraction:
        sent = schema.model_json_schema() if isinstance(schema, type) and issubclass(schema, BaseModel) else schema
        body = {"text": with_notes(text, notes), "schema": sent}
        if self.model:
            body["model"] = self.model
        if self.rank is not None:
            body["rank"] = self.rank
        out = _checked(self.client.post("/v1/extract", json=body))
        return Extraction(
            out["fields"],
            out.get("confidence") or {},
            ground(out["fields"], text),
            out.get("raw", ""),
            out.get("model", self.name),
            calibrated=bool(out.get("calibrated")),
            automation=out.get("automation"),
        )

    def explain(self, doc_type, decision, reasons) -> str:
        out = _checked(
            self.client.post(
                "/v1/chat/completions",
                json={
                    "model": self.model or "default",
                    "messages": explain_messages(doc_type, decision, reasons),
                    "max_tokens": 160,
                },
            )
        )
        return out["choices"][0]["message"]["content"]


class OpenAIModel:
    """Any OpenAI-compatible server (vLLM, Ollama, ...) by its base URL, `/v1` included as the openai SDK
    takes it (`http://host:8000/v1`): structured output by JSON Schema (`response_format`); no
    per-field confidence (fields are then judged by grounding and validation alone)."""

    def __init__(self, base_url: str, *, model: str, api_key: str | None = None, timeout_s: float = 600):
        import httpx

        self.name, self.model = model, model
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers={"Authorization": f"Bearer {api_key or 'none'}"}
        )

    def extract(self, text, schema, *, notes=None) -> Extraction:
        spec = spec_of(schema)
        out = _checked(
            self.client.post(
                "chat/completions",
                json={
                    "model": self.model,
                    "messages": spec.messages(with_notes(text, notes)),
                    "temperature": 0,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "record", "schema": spec.json_schema},
                    },
                },
            )
        )
        raw = out["choices"][0]["message"]["content"] or ""
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError:
            fields = {}
        if not isinstance(fields, dict):
            fields = {}
        return Extraction(fields, {k: None for k in fields}, ground(fields, text), raw, self.name)

    def explain(self, doc_type, decision, reasons) -> str:
        out = _checked(
            self.client.post(
                "chat/completions",
                json={
                    "model": self.model,
                    "messages": explain_messages(doc_type, decision, reasons),
                    "max_tokens": 160,
                },
            )
        )
        return out["choices"][0]["message"]["content"]


class ModelError(Upstream):
    pass


def _checked(response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise ModelError(
            f"{response.request.method} {response.request.url} answered {response.status_code}: {response.text[:500]}"
        )
    return response.json()
