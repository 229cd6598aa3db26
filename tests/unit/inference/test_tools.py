"""Function calling: tools parsed and checked, the prompt rendered, and calls decoded under the tools'
grammar (tiny random model: a call must be valid without the model knowing anything)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from backend.errors import InvalidRequest
from backend.inference import tools as T
from backend.inference.bundle import AdapterBundle
from backend.inference.pool import ModelPool

RECEIPT = {
    "type": "function",
    "function": {
        "name": "extract_receipt",
        "description": "Extract the fields of a receipt from its text",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "The receipt's text"}},
            "required": ["text"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"enum": ["C", "F"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "hourly": {"type": "boolean"},
            },
            "required": ["city", "unit"],
        },
    },
}
NO_ARGUMENTS = {"type": "function", "function": {"name": "now"}}
ASK = [{"role": "user", "content": "Extract the fields from this receipt: KEDAI MAJU 25/12/2018 TOTAL RM 9.00"}]


@pytest.fixture(scope="module")
def pool():
    return ModelPool(device="cpu", dtype="float32")


def _schema(entry):
    return entry["function"].get("parameters") or {"type": "object", "properties": {}}


def _call(pool, tiny_model, offered, *, allowed=None, text=False, messages=ASK, **kw):
    parsed = T.parse_tools(offered)
    chosen = [t for t in parsed if t.name in allowed] if allowed else None
    return T.chat_with_tools(
        pool,
        AdapterBundle(tiny_model),
        messages,
        parsed,
        allowed=chosen,
        text=text,
        max_new_tokens=None,
        limit=2048,
        **kw,
    )


@pytest.mark.parametrize("allowed", [None, ["extract_receipt"], ["get_weather"], ["now"]])
def test_a_required_call_always_parses_and_matches_its_tool(pool, tiny_model, allowed):
    offered = [RECEIPT, WEATHER, NO_ARGUMENTS]
    answer = _call(pool, tiny_model, offered, allowed=allowed)
    assert answer["finish_reason"] == "tool_calls" and answer["content"] is None
    [call] = answer["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])  # a string, as OpenAI
    assert name in (allowed or [t["function"]["name"] for t in offered])
    jsonschema.validate(arguments, _schema(next(t for t in offered if t["function"]["name"] == name)))
    assert answer["prompt_tokens"] > 0 and answer["completion_tokens"] > 0


def test_auto_answers_in_text_or_with_a_valid_call(pool, tiny_model):
    for messages in (ASK, [{"role": "user", "content": "hello"}], [{"role": "user", "content": "{"}]):
        answer = _call(pool, tiny_model, [RECEIPT, WEATHER], text=True, messages=messages)
        if answer["tool_calls"]:
            arguments = json.loads(answer["tool_calls"][0]["function"]["arguments"])
            jsonschema.validate(arguments, _schema(RECEIPT if "text" in arguments else WEATHER))
            assert answer["finish_reason"] == "tool_calls"
        else:
            assert answer["content"] and not answer["content"].startswith("{")
            assert answer["finish_reason"] in ("stop", "length")


def test_the_grammar_offers_a_text_answer_only_under_auto():
    parsed = T.parse_tools([RECEIPT, WEATHER])
    assert T.grammar(parsed, text=False).startswith("start: call_0 | call_1\n")
    assert T.grammar(parsed, text=True).startswith("start: call_0 | call_1 | answer\n")
    assert '"const": "get_weather"' in T.grammar(parsed, text=False)


def test_max_tokens_cuts_a_text_answer_never_a_call(pool, tiny_model):
    parsed = T.parse_tools([RECEIPT])
    assert parsed[0].call_schema["properties"]["arguments"]["properties"]["text"]["maxLength"] == T.TOOL_VALUE_CHARS
    call = T.chat_with_tools(pool, AdapterBundle(tiny_model), ASK, parsed, text=False, max_new_tokens=3, limit=2048)
    assert call["finish_reason"] == "tool_calls" and call["completion_tokens"] > 3
    assert isinstance(json.loads(call["tool_calls"][0]["function"]["arguments"])["text"], str)
    hello = [{"role": "user", "content": "hello"}]
    answer = T.chat_with_tools(pool, AdapterBundle(tiny_model), hello, parsed, text=True, max_new_tokens=3, limit=2048)
    if answer["tool_calls"] is None:  # the tiny model's choice under auto
        assert answer["completion_tokens"] <= 3 and answer["finish_reason"] in ("stop", "length")


def test_a_prompt_that_leaves_no_room_is_refused(tiny_model):
    pool = ModelPool(device="cpu", dtype="float32", max_prompt_tokens=10**6)  # the context is the limit here
    long = [{"role": "user", "content": "TOTAL 9.00 " * 900}]
    with pytest.raises(InvalidRequest, match="leaves .* of the model's context of 4096"):
        T.chat_with_tools(
            pool, AdapterBundle(tiny_model), long, T.parse_tools([RECEIPT]), text=False, max_new_tokens=None, limit=2048
        )


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"type": "function"}, r'tools\[0\]: expected {"type": "function"'),
        ({"type": "retrieval", "function": {"name": "x"}}, r"tools\[0\]: expected"),
        ({"type": "function", "function": {"name": "bad name"}}, r"tools\[0\].function.name: 1-64 letters"),
        ({"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}, "must describe an object"),
        (
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "parameters": {
                        "type": "object",
                        "properties": {"n": {"$ref": "#/$defs/Node"}},
                        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
                    },
                },
            },
            "is recursive",
        ),
        (
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": ["a"]}}},
            r"tools\[0\].function.parameters: not a usable JSON Schema",
        ),
        (
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "parameters": {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}},
                },
            },
            r"tools\[0\].function.parameters: cannot be used for constrained decoding",
        ),
    ],
)
def test_bad_tools_say_which_entry_is_wrong(entry, message):
    with pytest.raises(InvalidRequest, match=message):
        T.parse_tools([entry])


def test_a_tool_named_twice_is_refused():
    with pytest.raises(InvalidRequest, match=r"tools\[1\].function.name: 'extract_receipt' is named twice"):
        T.parse_tools([RECEIPT, RECEIPT])


def test_tool_choice():
    parsed = T.parse_tools([RECEIPT, WEATHER])
    assert (
        T.choose_tools(parsed, "auto") == parsed == T.choose_tools(parsed, "required") == T.choose_tools(parsed, None)
    )
    assert T.choose_tools(parsed, "none") is None
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert [t.name for t in T.choose_tools(parsed, named) or []] == ["get_weather"]
    with pytest.raises(InvalidRequest, match="tool_choice: no tool named 'ghost'"):
        T.choose_tools(parsed, {"type": "function", "function": {"name": "ghost"}})
    with pytest.raises(InvalidRequest, match="tool_choice: expected"):
        T.choose_tools(parsed, "sometimes")


CONVERSATION = [
    {"role": "system", "content": "You are a bookkeeper."},
    *ASK,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "name": "extract_receipt", "arguments": '{"text": "TOTAL RM 9.00"}'}],
    },
    {"role": "tool", "content": '{"total": "9.00"}', "tool_call_id": "call_1", "name": None},
]


def test_without_template_support_tools_go_into_the_system_prompt_and_turns_become_text():
    rendered = T.render(CONVERSATION, T.parse_tools([RECEIPT]), native=False)
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    system = rendered[0]["content"]
    assert system.startswith("You are a bookkeeper.\n\n" + T.TOOLS_PROMPT)
    assert json.loads(system.splitlines()[-1])["name"] == "extract_receipt"
    assert json.loads(rendered[2]["content"]) == {"name": "extract_receipt", "arguments": {"text": "TOTAL RM 9.00"}}
    assert rendered[3]["content"] == 'Result of extract_receipt (call_1): {"total": "9.00"}'
    plain = T.plain_messages(CONVERSATION)  # tool_choice none: no tool list
    assert plain[0]["content"] == "You are a bookkeeper." and plain[1:] == rendered[1:]


NATIVE_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>{% endif %}"
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}[{{ c.function.name }} {{ c.function.arguments.text }}]"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_a_template_that_takes_tools_renders_them_itself(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert not T.template_takes_tools(tokenizer)
    tokenizer.chat_template = NATIVE_TEMPLATE
    assert T.template_takes_tools(tokenizer)
    text = tokenizer.decode(T.encode(tokenizer, CONVERSATION, T.parse_tools([RECEIPT, WEATHER])))
    assert text.startswith("<tools>extract_receipt;get_weather;</tools><system>You are a bookkeeper.<user>")
    assert "<assistant>[extract_receipt TOTAL RM 9.00]" in text  # the call's arguments as an object
    assert text.endswith('<tool>{"total": "9.00"}<assistant>')
