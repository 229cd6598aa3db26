"""Inference: `/v1/chat/completions` (OpenAI-compatible, with streaming and function calling), `/v1/infer`, `/v1/extract`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any, Literal

import anyio
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.api.deps import Authorized, BatcherDep, EngineDep, SettingsDep
from backend.api.errors import OPENAI_ERROR_RESPONSES
from backend.inference import tools
from backend.inference.pool import GenRequest, GenResult, apply_stop
from backend.services import inference as service

router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Authorized])


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The call's arguments: a JSON object, as a string (OpenAI's form).")


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="developer is read as system (OpenAI's newer name); tool: a tool's result (with tool_call_id)."
    )
    content: str | list[TextPart] | None = Field(None, description="May be null on an assistant turn with tool_calls.")
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant turn's calls (function calling).")
    tool_call_id: str | None = Field(None, description="On a tool message: the call it answers.")
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_function_turns(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("role") == "function":
            raise ValueError(
                "role 'function' is not supported (OpenAI's older form): send role 'tool' with tool_call_id"
            )
        return data

    @model_validator(mode="after")
    def _content_given(self) -> Message:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"content: required on a {self.role} message")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool_call_id: required on a tool message")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("tool_calls: only an assistant message carries them")
        return self

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    @property
    def chat_role(self) -> str:
        return "system" if self.role == "developer" else self.role

    @property
    def turn(self) -> dict[str, Any]:
        """The message for prompt rendering (`backend/inference/tools.py`)."""
        out: dict[str, Any] = {"role": self.chat_role, "content": self.text}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in self.tool_calls
            ]
        if self.role == "tool":
            out["tool_call_id"], out["name"] = self.tool_call_id, self.name
        return out


class Generation(BaseModel):
    """Generation options shared by the inference routes (OpenAI names)."""

    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate (default 256).")
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer OpenAI name for max_tokens.")
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy (deterministic).")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = Field(None, description="Cut the answer before any of these strings.")
    seed: int | None = Field(None, description="Seed for sampled (temperature > 0) generation.")

    def gen_request(self, messages: list[dict[str, str]], *, limit: int) -> GenRequest:
        wanted = self.max_completion_tokens or self.max_tokens or 256
        if wanted > limit:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"max_tokens: got {wanted}, the limit is {limit} (TUNEBRIDGE_MAX_NEW_TOKENS)",
            )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return GenRequest(
            tuple((m["role"], m["content"]) for m in messages),
            max_new_tokens=wanted,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
        )


class JsonSchemaFormat(BaseModel):
    name: str = "answer"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.json_schema: required when type is 'json_schema'")
        return self

    @property
    def decoding_schema(self) -> dict[str, Any] | None:
        if self.type == "json_schema":
            return self.json_schema.schema_  # type: ignore[union-attr]
        return {"type": "object", "additionalProperties": True} if self.type == "json_object" else None


class ChatIn(Generation):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send options we don't use (user, logprobs, ...)

    model: str = Field(description="A base model, or an adapter: name, name@version or name@alias.")
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    response_format: ResponseFormat | None = Field(
        None,
        description="json_schema / json_object: the answer is "
        "decoded under the schema, so it always parses and validates.",
    )
    tools: list[dict[str, Any]] | None = Field(
        None,
        description="Function tools ({type: function, function: {name, description, parameters}}). A call is "
        "decoded under a grammar: its arguments always parse and match the tool's parameters. One call per answer.",
    )
    tool_choice: Any = Field(
        None,
        description="auto (default with tools: a call or a text answer, the model chooses), required, none, or "
        "{type: function, function: {name}}.",
    )
    parallel_tool_calls: bool | None = Field(None, description="Accepted; an answer holds at most one call.")
    functions: list[Any] | None = Field(None, description="Refused when non-empty (the older name of tools).")

    @model_validator(mode="after")
    def _tools_usable(self) -> ChatIn:
        if self.functions:
            raise ValueError("functions: the older form of function calling is not supported; send tools instead")
        if self.tool_choice not in (None, "none", "auto") and not self.tools:
            raise ValueError("tool_choice: needs tools")
        if self.tools and self.tool_choice != "none" and self.response_format is not None:
            raise ValueError("response_format: cannot be combined with tools (unless tool_choice is 'none')")
        return self


class InferIn(Generation):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="A user message (or send `messages`).")
    messages: list[Message] | None = Field(None, min_length=1)
    system: str | None = Field(None, description="A system message to go with `prompt`.")
    adapter: str | None = Field(None, description="name, name@version or name@alias; default: the base model.")
    model: str | None = Field(None, description="Base model (default: the adapter's base, else the service's).")

    @model_validator(mode="after")
    def _one_input(self) -> InferIn:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


class ExtractIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The document's text (OCR output, e-mail body, ...).")
    schema_: dict[str, Any] | list[str] | str | None = Field(
        None,
        alias="schema",
        description="A JSON Schema object, a list of field names, or a schema name "
        "('receipt', 'invoice'); default: the adapter's training schema.",
    )
    adapter: str | None = Field(None, description="name, name@version or name@alias.")
    model: str | None = Field(None, description="Base model, when no adapter is given.")
    constrained: bool = Field(
        True,
        description="Decode under the schema: always valid JSON, with per-field "
        "confidence and grounding. false: free generation, parsed after.",
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Default: enough for the longest answer the schema allows (constrained), else 512."
    )
    rank: Literal["typed", "text", False] | None = Field(
        None,
        description="Constrained, with an adapter trained on extraction data: after decoding, let the model "
        "choose among the document's candidate spans. typed (the default for such an adapter): amounts "
        "and dates the document does not print are replaced by the best one it does; text: also "
        "name/address fields printed as whole lines (slower); false: no ranking. Each choice is "
        "returned in `ranking`; a value ranking changed is never auto-approved.",
    )


def _disconnected(request: Request):
    """Whether the client has gone: asked from the worker thread a sync route runs in."""
    return lambda: anyio.from_thread.run(request.is_disconnected)


def _run(batcher, target, request: GenRequest, http: Request | None = None) -> GenResult:
    return batcher.generate(target, request, disconnected=_disconnected(http) if http is not None else None)


def _usage(result: GenResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion (model = adapter or base model)",
    responses=OPENAI_ERROR_RESPONSES,
)
def chat_completions(body: ChatIn, engine: EngineDep, settings: SettingsDep, batcher: BatcherDep, http: Request):
    target, _ = service.resolve_target(engine=engine, default_base=settings.default_base_model, model=body.model)
    turns = [m.turn for m in body.messages]
    request = body.gen_request(tools.plain_messages(turns), limit=settings.max_new_tokens)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    limits = (settings.max_schema_properties, settings.max_schema_depth)
    offered = tools.parse_tools(body.tools, limits=limits) if body.tools else []
    callable_ = tools.choose_tools(offered, body.tool_choice) if offered else None
    schema = body.response_format.decoding_schema if body.response_format else None
    if callable_:
        answer = service.chat_tools(
            batcher=batcher,
            target=target,
            messages=turns,
            tools=offered,
            allowed=callable_,
            text=body.tool_choice in (None, "auto"),
            max_new_tokens=body.max_completion_tokens or body.max_tokens,
            limit=settings.max_new_tokens,
            stop=request.stop,
        )
        message = {"role": "assistant", "content": answer["content"]}
        if answer["tool_calls"]:
            message["tool_calls"] = answer["tool_calls"]
        usage = {
            "prompt_tokens": answer["prompt_tokens"],
            "completion_tokens": answer["completion_tokens"],
            "total_tokens": answer["prompt_tokens"] + answer["completion_tokens"],
        }
        if body.stream:  # decoded whole (a call is only valid once closed), sent as one piece
            return StreamingResponse(
                _sse_whole(message, answer["finish_reason"], usage, completion_id, created, target.label),
                media_type="text/event-stream",
            )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": target.label,
            "choices": [{"index": 0, "message": message, "finish_reason": answer["finish_reason"]}],
            "usage": usage,
        }
    if schema is not None:
        out = service.chat_structured(
            batcher=batcher,
            target=target,
            messages=request.chat,
            json_schema=schema,
            max_new_tokens=body.max_completion_tokens or body.max_tokens,
            limit=settings.max_new_tokens,
            limits=limits,
        )
        result = GenResult(out["text"], out["finish_reason"], out["prompt_tokens"], out["completion_tokens"])
        if body.stream:  # decoded whole, sent as one piece
            done: Future = Future()
            done.set_result(result)
            return StreamingResponse(
                _sse(iter([result.text]), done, request, completion_id, created, target.label),
                media_type="text/event-stream",
            )
    elif body.stream:
        pieces, future = batcher.stream(target, request)
        return StreamingResponse(
            _sse(pieces, future, request, completion_id, created, target.label), media_type="text/event-stream"
        )
    else:
        result = _run(batcher, target, request, http)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": target.label,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": _usage(result),
    }


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None, **extra) -> str:
    """One server-sent event of an OpenAI chat stream."""
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


def _sse_whole(
    message: dict[str, Any], finish: str, usage: dict[str, int], completion_id: str, created: int, model: str
) -> Iterator[str]:
    """A whole answer as OpenAI's stream: the role, the content or each call (with its index), the end."""
    chunk = partial(_chunk, completion_id, created, model)

    yield chunk({"role": "assistant", "content": ""}, None)
    if message.get("content"):
        yield chunk({"content": message["content"]}, None)
    for index, call in enumerate(message.get("tool_calls") or []):
        yield chunk({"tool_calls": [{"index": index, **call}]}, None)
    yield chunk({}, finish, usage=usage)
    yield "data: [DONE]\n\n"


def _sse(
    pieces: Iterator[str], future, request: GenRequest, completion_id: str, created: int, model: str
) -> Iterator[str]:
    chunk = partial(_chunk, completion_id, created, model)

    yield chunk({"role": "assistant", "content": ""}, None)
    text, sent, stopped = "", 0, False
    for piece in pieces:
        if stopped:
            continue  # drain: generation ends on its own
        text += piece
        visible, stopped = apply_stop(text, request.stop)
        if stopped:
            piece = visible[sent:]
        else:  # hold back a tail that could be the start of a stop string
            hold = max((len(s) - 1 for s in request.stop), default=0)
            piece = visible[sent : len(visible) - hold] if hold else visible[sent:]
        if piece:
            yield chunk({"content": piece}, None)
            sent += len(piece)
    result: GenResult = future.result()
    rest = apply_stop(text, request.stop)[0][sent:].rstrip()  # what was held back
    if rest:
        yield chunk({"content": rest}, None)
    yield chunk({}, result.finish_reason, usage=_usage(result))
    yield "data: [DONE]\n\n"


@router.post("/infer", summary="Generate with a base model or an adapter (prompt or messages)")
def infer(
    body: InferIn, engine: EngineDep, settings: SettingsDep, batcher: BatcherDep, http: Request
) -> dict[str, Any]:
    target, _ = service.resolve_target(
        engine=engine, default_base=settings.default_base_model, model=body.model, adapter=body.adapter
    )
    if body.messages is not None:
        messages = tools.plain_messages([m.turn for m in body.messages])
    else:
        assert body.prompt is not None  # InferIn: exactly one of prompt and messages
        messages = ([{"role": "system", "content": body.system}] if body.system else []) + [
            {"role": "user", "content": body.prompt}
        ]
    started = time.perf_counter()
    result = _run(batcher, target, body.gen_request(messages, limit=settings.max_new_tokens), http)
    return {
        "model": target.label,
        "text": result.text,
        "finish_reason": result.finish_reason,
        "usage": _usage(result),
        "latency_ms": round(1000 * (time.perf_counter() - started), 1),
    }


@router.post("/extract", summary="Extract fields from a document as JSON (the training prompt template)")
def extract(
    body: ExtractIn, engine: EngineDep, settings: SettingsDep, batcher: BatcherDep, http: Request
) -> dict[str, Any]:
    """Fields, per-field confidence, grounding spans and `review`; with an adapter that stores automation
    thresholds, also `automation` ({field: "auto" | "review"}) and its `target_precision`."""
    target, record = service.resolve_target(
        engine=engine, default_base=settings.default_base_model, model=body.model, adapter=body.adapter
    )
    if body.max_tokens and body.max_tokens > settings.max_new_tokens:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"max_tokens: got {body.max_tokens}, the limit is {settings.max_new_tokens}",
        )
    spec = service.extraction_spec(
        body.schema_, record, limits=(settings.max_schema_properties, settings.max_schema_depth)
    )
    return service.extract(
        batcher=batcher,
        target=target,
        text=body.text,
        spec=spec,
        max_new_tokens=body.max_tokens,
        limit=settings.max_new_tokens,
        constrained=body.constrained,
        review_confidence=settings.review_confidence,
        rank=body.rank,
        disconnected=_disconnected(http),
    )


@router.get("/serving", summary="What the serving process holds and how batching and the prefix cache fare")
def serving(batcher: BatcherDep) -> dict[str, Any]:
    pool = batcher.pool
    return {
        "loaded": pool.loaded(),
        "dtype": str(pool.dtype).removeprefix("torch."),
        "device": pool.device,
        "batches": batcher.batches,
        "requests": batcher.requests,
        "largest_batch": batcher.largest,
        "dropped": batcher.dropped,
        "abandoned": batcher.abandoned,
        "prefix_cache": {"hits": pool.prefixes.hits, "misses": pool.prefixes.misses},
    }
