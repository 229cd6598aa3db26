"""An Ollama `Modelfile` for an exported GGUF: the chat template in Ollama's Go-template syntax.

A Jinja chat template cannot be translated in general, so the turn formats we ship are written out
by hand (ChatML, as SmolLM2 uses; Gemma's turns) and the one to use is the one that renders sample
conversations exactly as the tokenizer's own `apply_chat_template` does. A default system prompt
the Jinja template inserts (SmolLM2 has one) becomes the Modelfile's `SYSTEM`, which Ollama puts
first when a conversation starts without a system message. A BOS token the template writes is left
out when the tokenizer adds one itself: llama.cpp adds it then, as the GGUF says. `render_go_template` renders the few Go-template constructs
these templates use, as Ollama would, so the match can be checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Ollama fills .Messages with the conversation; each has .Role and .Content.
TURN_FORMATS = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
        "<|im_end|>",
    ),
    "gemma": (
        '{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}\n'
        "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
        "<end_of_turn>",
    ),
}

PROBES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the total?"}],
    [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Total: 9.00"}],
    [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second\nquestion"},
    ],
]


class ChatFormatError(ValueError):
    """The chat template is none of the turn formats a Modelfile can be written for."""


@dataclass(frozen=True)
class ChatFormat:
    name: str
    template: str  # Go template for Ollama
    stops: tuple[str, ...]
    system: str | None  # default system prompt, or None


def render_go_template(template: str, messages: list[dict[str, str]]) -> str:
    """Render `template` for `messages` as Ollama would; only the constructs in TURN_FORMATS exist:
    `range .Messages`, `.Role`, `.Content`, `if eq .Role "..."`/`else`/`end`, and `{{-`/`-}}` trimming."""
    parts = re.split(r"({{-?\s*.*?\s*-?}})", template)
    tokens: list[tuple[str, str]] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if i > 0 and parts[i - 1].endswith("-}}"):
                part = part.lstrip()
            if i + 1 < len(parts) and parts[i + 1].startswith("{{-"):
                part = part.rstrip()
            tokens.append(("text", part))
        else:
            tokens.append(("action", part.strip("{}-").strip()))
    out, rest = _render(tokens, {"Messages": messages}, None)
    if rest:
        raise ValueError(f"unexpected {{{{ {rest[0][1]} }}}} in template")
    return out


def _render(tokens: list[tuple[str, str]], data: dict, item: dict | None) -> tuple[str, list[tuple[str, str]]]:
    """Render until an `else`/`end` at this level; return the text and the tokens from that one on."""
    out = ""
    while tokens:
        kind, value = tokens[0]
        tokens = tokens[1:]
        if kind == "text":
            out += value
        elif value in (".Role", ".Content"):
            if item is None:
                raise ValueError(f"{{{{ {value} }}}} outside range .Messages")
            out += item[value[1:].lower()]
        elif value == "range .Messages":
            body = tokens
            for message in data["Messages"]:
                text, tokens = _render(body, data, message)
                out += text
            if not data["Messages"]:
                _, tokens = _render(body, data, {"role": "", "content": ""})
            tokens = _expect_end(tokens)
        elif match := re.fullmatch(r'if eq \.Role "([^"]*)"', value):
            if item is None:
                raise ValueError("{{ if eq .Role }} outside range .Messages")
            then, tokens = _render(tokens, data, item)
            other = ""
            if tokens and tokens[0] == ("action", "else"):
                other, tokens = _render(tokens[1:], data, item)
            out += then if item["role"] == match.group(1) else other
            tokens = _expect_end(tokens)
        elif value in ("else", "end"):
            return out, [(kind, value), *tokens]
        else:
            raise ValueError(f"unsupported template action {{{{ {value} }}}}")
    return out, []


def _expect_end(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not tokens or tokens[0] != ("action", "end"):
        raise ValueError("template block without {{ end }}")
    return tokens[1:]


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding text puts the BOS token first (GGUF's `tokenizer.ggml.add_bos_token`)."""
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


def ollama_messages(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """What Ollama hands the template: the Modelfile's SYSTEM first unless the chat starts with one."""
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def chat_format(tokenizer: Any) -> ChatFormat:
    """The turn format whose Go template renders like `tokenizer.apply_chat_template` (generation
    prompt added) for every probe conversation, with the default system prompt it inserts."""
    # A BOS the template writes is left to llama.cpp when the GGUF says to add one (as the tokenizer does).
    bos = tokenizer.bos_token if adds_bos(tokenizer) else ""

    def expected(messages: list[dict[str, str]]) -> str:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text[len(bos) :] if bos and text.startswith(bos) else text

    for name, (template, end_of_turn) in TURN_FORMATS.items():
        system = _default_system(template, expected(PROBES[0]), PROBES[0])
        if all(expected(p) == render_go_template(template, ollama_messages(p, system)) for p in PROBES):
            stops = [end_of_turn]
            if tokenizer.eos_token and tokenizer.eos_token not in stops:
                stops.append(tokenizer.eos_token)
            return ChatFormat(name, template, tuple(stops), system)
    raise ChatFormatError(
        "the tokenizer's chat template renders none of the turn formats a Modelfile is written for "
        f"({', '.join(TURN_FORMATS)}); it renders a user message as {expected(PROBES[0])!r}"
    )


def _default_system(template: str, rendered: str, messages: list[dict[str, str]]) -> str | None:
    """The system prompt the Jinja template put before `messages`, if it put one there."""
    plain = render_go_template(template, messages)
    if rendered == plain or not rendered.endswith(plain):
        return None
    marker = "\x00"
    before, _, after = render_go_template(template, [{"role": "system", "content": marker}]).partition(marker)
    after = after[: len(after) - len(render_go_template(template, []))]  # drop the generation prompt
    prefix = rendered[: len(rendered) - len(plain)]
    if prefix.startswith(before) and prefix.endswith(after) and len(prefix) >= len(before) + len(after):
        return prefix[len(before) : len(prefix) - len(after)]
    return None


def modelfile_text(fmt: ChatFormat, gguf_name: str = "model.gguf", adapter_name: str | None = None) -> str:
    for text in (fmt.template, fmt.system or ""):
        if '"""' in text:
            raise ChatFormatError(f'a Modelfile cannot quote text that contains """: {text[:80]!r}')
    for stop in fmt.stops:
        if '"' in stop or "\n" in stop:
            raise ChatFormatError(f"a Modelfile stop parameter cannot hold {stop!r}")
    lines = [
        "# Ollama: ollama create NAME -f Modelfile",
        f"FROM ./{gguf_name}",
        *([f"ADAPTER ./{adapter_name}"] if adapter_name else []),
        f'TEMPLATE """{fmt.template}"""',
    ]
    if fmt.system:
        lines.append(f'SYSTEM """{fmt.system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in fmt.stops]
    lines.append("PARAMETER temperature 0")  # greedy, as tunebridge generates by default
    return "\n".join(lines) + "\n"
