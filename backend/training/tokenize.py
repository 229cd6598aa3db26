"""Turn chats into token ids with completion-only labels (prompt tokens carry -100).

The chat template is rendered once for the whole conversation; every assistant turn's character
span is found by rendering the conversation up to that turn, and tokens are labelled by their
character offsets. The answer's end-of-turn token is labelled too, so the model learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.errors import InvalidRequest
from backend.training.data import Example

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    origin: str

    @property
    def n_answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


class TemplateError(InvalidRequest):
    """The chat template does not render a conversation as a growing prefix."""


def encode_chat(tokenizer, messages: list[dict[str, str]], *, origin: str = "") -> Encoded:
    render = tokenizer.apply_chat_template
    full = render(messages, tokenize=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = render(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        end_text = render(messages[: i + 1], tokenize=False)
        if not full.startswith(start_text) or not full.startswith(end_text):
            raise TemplateError(f"{origin}: chat template does not render turn {i} as a prefix of the chat")
        spans.append((len(start_text), len(end_text)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = [IGNORE] * len(enc["input_ids"])
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        if any(s <= a and b <= e and b > a for s, e in spans):
            labels[t] = enc["input_ids"][t]
    return Encoded(list(enc["input_ids"]), labels, origin)


@dataclass
class EncodedSet:
    items: list[Encoded]
    too_long: list[tuple[str, int]]  # (origin, tokens) of examples dropped for exceeding max_length

    @property
    def n_tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.items)


def encode_examples(tokenizer, examples: list[Example], *, max_length: int) -> EncodedSet:
    """Encode all examples; those longer than `max_length` are reported, never cut mid-answer."""
    items, too_long = [], []
    for ex in examples:
        enc = encode_chat(tokenizer, ex.messages, origin=ex.origin)
        if len(enc.input_ids) > max_length:
            too_long.append((ex.origin, len(enc.input_ids)))
            continue
        if enc.n_answer_tokens == 0:
            raise TemplateError(f"{ex.origin}: no answer tokens after templating")
        items.append(enc)
    return EncodedSet(items, too_long)
