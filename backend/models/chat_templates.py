"""Chat templates for base models that ship without one (`chat_template` in TrainConfig).

A template is a shipped name (`chatml`, `gemma`) or a Jinja file in transformers' chat-template form
(`messages`, `add_generation_prompt`, `bos_token`, ...). The one trained with is saved with the run's
tokenizer, so `tunebridge generate`, `eval` and the API render prompts the same way.
"""

from __future__ import annotations

from pathlib import Path

from backend.errors import InvalidRequest
from backend.models.bundled import GEMMA_TEMPLATE
from backend.models.loading import CHATML_TEMPLATE

CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE, "gemma": GEMMA_TEMPLATE}


def read_chat_template(ref: str, *, option: str = "chat_template") -> str:
    """The template text for a shipped name or a Jinja file; the error names the option, file and line."""
    if ref in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[ref]
    path = Path(ref).expanduser()
    if not path.is_file():
        raise InvalidRequest(
            f"{option}: got {ref!r}, expected a shipped template ({', '.join(sorted(CHAT_TEMPLATES))}) "
            "or a Jinja template file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{option}: {path}: cannot be read ({exc})") from None
    import jinja2

    try:
        jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidRequest(f"{option}: {path}:{exc.lineno}: not a valid Jinja template ({exc.message})") from None
    if "messages" not in text:
        raise InvalidRequest(f"{option}: {path}: the template never reads `messages`, so it renders no chat")
    return text
