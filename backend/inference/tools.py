"""Function calling for small models (OpenAI `tools` in `/v1/chat/completions`).

A small model has rarely been trained to call tools, so a call is never left to chance: the answer is
decoded under a grammar (llguidance, the same decode loop as extraction) whose calls are JSON objects

    {"name": "<one of the tools>", "arguments": {...}}

with `arguments` under that tool's `parameters` schema (bounded like an extraction schema, so a call
always closes within its token budget). `tool_choice`:

- `auto` (the default with tools): the grammar has two alternatives, a call or a plain-text answer
  (which may not start with `{`); the model's first tokens choose between them.
- `required`: a call to one of the tools; `{"type": "function", "function": {"name": ...}}`: a call to
  that one.
- `none`: no call; the tools are left out of the prompt and the answer is generated as usual.

One call per answer (`parallel_tool_calls` is accepted; one call is always a valid answer to it).
Decoding is greedy (the constrained decode loop's only mode).
A string argument without a `maxLength` gets `TOOL_VALUE_CHARS` (an agent passes whole documents to
tools). `max_tokens` limits a text answer; a call always gets the tokens its schema may need (within
the service's limit and the model's context), so it is never cut off.

The prompt: when the tokenizer's chat template takes `tools` (its source names them), the tool list,
earlier calls and tool results go through the template as the model was trained to read them;
calls are still decoded in the JSON shape above, the shape Hermes, Qwen and Llama 3.1 templates ask
for. Otherwise (ChatML templates such as SmolLM2's) the tools are written into the system prompt
(`TOOLS_PROMPT`: an instruction, then one JSON line per tool), an earlier call becomes the assistant
turn the model would have written (the JSON object), and a tool's result becomes a user turn
`Result of <name> (<call id>): <content>`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from llguidance import LLMatcher

from backend.errors import InvalidRequest
from backend.inference.bundle import AdapterBundle
from backend.inference.constrained import JSON_LAYOUT, bound_schema, check_schema_size, schema_of
from backend.inference.decoding import constrained_batch
from backend.inference.extraction import DRAFT_ALONE
from backend.inference.pool import ModelPool, PromptTooLongError, apply_stop, stop_ids

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOLS_PROMPT = (
    "You can call tools. To call one, answer with only a JSON object "
    '{"name": <the tool\'s name>, "arguments": <its arguments>}; otherwise answer in plain text.\n'
    "Tools (name, description, JSON Schema of the arguments):"
)
# A plain-text answer under `auto`: anything that does not start like a call (a `{`) or with whitespace.
TEXT_ANSWER = r"/[^{\s][\s\S]*/"
DEFAULT_TEXT_TOKENS = 256
TOOL_VALUE_CHARS = 1000  # the default maxLength of a string argument
MIN_ANSWER_TOKENS = 16  # a prompt that leaves fewer in the context is refused


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # as sent (self-contained: local references inlined)
    call_schema: dict[str, Any]  # {"name": const, "arguments": parameters}, bounded
    budget: int  # the most tokens a call can take

    @property
    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def parse_tools(tools: list[dict[str, Any]], *, limits: tuple[int, int] = (200, 8)) -> list[Tool]:
    """OpenAI `tools` entries (`{"type": "function", "function": {name, description?, parameters?}}`) as
    Tools; InvalidRequest naming the entry that is wrong. `limits`: as for response_format schemas."""
    out: list[Tool] = []
    for n, entry in enumerate(tools):
        where = f"tools[{n}]"
        if (
            not isinstance(entry, dict)
            or entry.get("type") != "function"
            or not isinstance(entry.get("function"), dict)
        ):
            raise InvalidRequest(f'{where}: expected {{"type": "function", "function": {{"name": ...}}}}')
        function = entry["function"]
        name = function.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequest(f"{where}.function.name: 1-64 letters, digits, '_' or '-', got {name!r}")
        if any(t.name == name for t in out):
            raise InvalidRequest(f"{where}.function.name: {name!r} is named twice")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        try:
            parameters = schema_of(parameters)
            check_schema_size(parameters, max_properties=limits[0], max_depth=limits[1])
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where}.function.parameters: {exc}") from exc
        if parameters.get("type", "object") != "object":
            raise InvalidRequest(
                f"{where}.function.parameters: must describe an object, got type {parameters['type']!r}"
            )
        call = {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": {"type": "object", **parameters}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        try:
            bounded, budget = bound_schema(call, max_length=TOOL_VALUE_CHARS)
            error = LLMatcher.validate_grammar(_rules([(0, bounded)], text=False))
        except (AttributeError, TypeError, ValueError) as exc:  # e.g. properties that are not an object
            raise InvalidRequest(f"{where}.function.parameters: not a usable JSON Schema ({exc})") from exc
        if error:
            raise InvalidRequest(f"{where}.function.parameters: cannot be used for constrained decoding: {error}")
        out.append(Tool(name, str(function.get("description") or ""), parameters, bounded, budget + len(name) + 2))
    return out


def choose_tools(tools: list[Tool], choice: Any) -> list[Tool] | None:
    """The tools a call may name under `tool_choice`, or None when no call may be made (`none`)."""
    if choice in (None, "auto", "required"):
        return tools or None
    if choice == "none":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        chosen = [t for t in tools if t.name == name]
        if not chosen:
            raise InvalidRequest(f"tool_choice: no tool named {name!r} among {[t.name for t in tools]}")
        return chosen
    raise InvalidRequest(
        'tool_choice: expected "none", "auto", "required" or {"type": "function", "function": {"name": ...}}'
    )


def grammar(tools: list[Tool], *, text: bool) -> str:
    """The llguidance (Lark) grammar of an answer: a call to one of `tools`, or (`text`) plain text."""
    return _rules([(n, t.call_schema) for n, t in enumerate(tools)], text=text)


def _rules(calls: list[tuple[int, dict[str, Any]]], *, text: bool) -> str:
    rules = [f"call_{n}: %json {json.dumps({'x-guidance': JSON_LAYOUT, **schema})}" for n, schema in calls]
    alternatives = " | ".join(f"call_{n}" for n, _ in calls)
    start = f"start: {alternatives} | answer\nanswer: {TEXT_ANSWER}" if text else f"start: {alternatives}"
    return "\n".join([start, *rules]) + "\n"


def template_takes_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list itself."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(str(v) for v in template.values())
    return isinstance(template, str) and "tools" in template


def _call_json(call: dict[str, Any]) -> dict[str, Any]:
    try:
        arguments = json.loads(call["arguments"]) if isinstance(call["arguments"], str) else call["arguments"]
    except ValueError:
        arguments = call["arguments"]  # passed on as the caller wrote it
    return {"name": call["name"], "arguments": arguments}


def render(messages: list[dict[str, Any]], tools: list[Tool], *, native: bool) -> list[dict[str, Any]]:
    """Chat messages for the template. Each message: role, content (str), and for an assistant turn
    that called tools `tool_calls` [{id, name, arguments}], for a tool result `tool_call_id`.
    `native`: the template renders tools (HF message format); else everything becomes plain
    system/user/assistant text (the module's docstring)."""
    names = {c["id"]: c["name"] for m in messages for c in m.get("tool_calls") or []}
    out: list[dict[str, Any]] = []
    for m in messages:
        calls = m.get("tool_calls") or []
        if m["role"] == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id") or "", "a tool")
            if native:
                out.append(
                    {"role": "tool", "content": m["content"], "name": name, "tool_call_id": m.get("tool_call_id")}
                )
            else:
                out.append({"role": "user", "content": f"Result of {name} ({m.get('tool_call_id')}): {m['content']}"})
        elif calls and native:
            out.append(
                {
                    "role": "assistant",
                    "content": m["content"],
                    "tool_calls": [{"id": c["id"], "type": "function", "function": _call_json(c)} for c in calls],
                }
            )
        elif calls:
            written = [json.dumps(_call_json(c), ensure_ascii=False) for c in calls]
            out.append({"role": "assistant", "content": "\n".join(([m["content"]] if m["content"] else []) + written)})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    if tools and not native:
        listed = "\n".join(
            json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters}, ensure_ascii=False)
            for t in tools
        )
        prompt = f"{TOOLS_PROMPT}\n{listed}"
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as system/user/assistant text, tools left out (`tool_choice: none`)."""
    return render(messages, [], native=False)


def encode(tokenizer, messages: list[dict[str, Any]], tools: list[Tool]) -> list[int]:
    native = template_takes_tools(tokenizer)
    rendered = render(messages, tools, native=native)
    extra = {"tools": [t.openai for t in tools]} if native and tools else {}
    ids = tokenizer.apply_chat_template(rendered, add_generation_prompt=True, tokenize=True, **extra)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def chat_with_tools(
    pool: ModelPool,
    target: AdapterBundle,
    messages: list[dict[str, Any]],
    tools: list[Tool],
    *,
    allowed: list[Tool] | None = None,
    text: bool,
    max_new_tokens: int | None,
    limit: int,
    stop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An answer that is a call to one of `allowed` (default: every tool; all of `tools` are in the
    prompt) or (`text`) plain text: {content, tool_calls, finish_reason, prompt_tokens,
    completion_tokens}. A call always parses and matches its tool's parameters; `max_new_tokens`
    (default 256) cuts only a text answer. InvalidRequest when the prompt leaves too little room."""
    allowed = allowed or tools
    budget = max(t.budget for t in allowed)
    wanted = max_new_tokens or DEFAULT_TEXT_TOKENS
    with pool.using(target) as (model, tokenizer, context):
        ids = encode(tokenizer, messages, tools)
        if len(ids) > pool.max_prompt_tokens:
            raise PromptTooLongError(
                f"prompt of {len(ids)} tokens is over the limit of {pool.max_prompt_tokens} "
                "(TUNEBRIDGE_MAX_PROMPT_TOKENS); shorten the messages or the tools"
            )
        cap = min(max(wanted if text else 0, budget), limit, context - len(ids))
        if cap < min(MIN_ANSWER_TOKENS, budget):
            raise PromptTooLongError(
                f"prompt of {len(ids)} tokens leaves {context - len(ids)} of the model's context of {context} "
                "for the answer; shorten the messages or the tools"
            )
        result = constrained_batch(
            model,
            tokenizer,
            [ids],
            [grammar(allowed, text=text)],
            max_new_tokens=cap,
            device=next(model.parameters()).device,
            eos_ids=stop_ids(model, tokenizer),
            draft=DRAFT_ALONE,  # arguments are often copied from the conversation
        )[0]
        tokens, finish = result.tokens, result.finish_reason
        if not result.text.startswith("{") and len(tokens) > wanted:  # a text answer past max_tokens
            tokens, finish = tokens[:wanted], "length"
        text_out = tokenizer.decode(tokens, skip_special_tokens=True) if tokens is not result.tokens else result.text
    usage = {"prompt_tokens": len(ids), "completion_tokens": len(tokens)}
    if not text_out.startswith("{"):  # the plain-text alternative
        content, stopped = apply_stop(text_out, stop)
        return {"content": content, "tool_calls": None, "finish_reason": "stop" if stopped else finish, **usage}
    try:
        call = json.loads(text_out)
    except ValueError as exc:  # cut off by the service's limit or the context, below the call's budget
        raise InvalidRequest(
            f"the call reached {cap} tokens (TUNEBRIDGE_MAX_NEW_TOKENS or the model's context) before its JSON "
            "closed; bound the tools' parameters more tightly (maxLength, maxItems, enum) or shorten the messages"
        ) from exc
    tool_call = {
        "id": call_id(),
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)},
    }
    return {"content": None, "tool_calls": [tool_call], "finish_reason": "tool_calls", **usage}
