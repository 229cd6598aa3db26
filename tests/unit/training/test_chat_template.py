"""`chat_template`: a shipped name or a Jinja file for base models without a template; mistakes name the
option, the file and the line; the template trained with is the one the run's tokenizer keeps."""

from __future__ import annotations

import pytest

from backend.cli import main as cli_main
from backend.errors import InvalidRequest
from backend.models.chat_templates import CHAT_TEMPLATES, read_chat_template
from backend.models.loading import load_tokenizer
from backend.training.config import TrainConfig
from backend.training.runfile import load_config
from backend.training.tokenize import encode_chat
from backend.training.trainer import train

# A plain "### role" layout, unlike the tiny model's own ChatML.
HASH_TEMPLATE = (
    "{% for message in messages %}### {{ message['role'] }}\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}### assistant\n{% endif %}"
)


def test_shipped_names_and_template_files_are_read(tmp_path):
    assert read_chat_template("chatml") == CHAT_TEMPLATES["chatml"]
    path = tmp_path / "hash.jinja"
    path.write_text(HASH_TEMPLATE)
    assert read_chat_template(str(path)) == HASH_TEMPLATE
    assert TrainConfig(chat_template=str(path)).chat_template == str(path)


def test_a_bad_template_names_the_option_the_file_and_the_line(tmp_path):
    path = tmp_path / "broken.jinja"
    path.write_text("{% for message in messages %}\n{{ message['content'] }}\n{% endfo %}\n")
    with pytest.raises(InvalidRequest, match=rf"^chat_template: {path}:3: not a valid Jinja template"):
        TrainConfig(chat_template=str(path))
    with pytest.raises(InvalidRequest, match=r"chat_template: got 'chatmlx', expected a shipped template \(chatml"):
        TrainConfig(chat_template="chatmlx")
    run = tmp_path / "run.yaml"
    run.write_text(f"data: a.jsonl\nchat_template: {path}\n")
    with pytest.raises(InvalidRequest, match=rf"{run}: chat_template: {path}:3:"):
        load_config(run)


def test_cli_flag_refuses_an_unknown_template(capsys, tiny_model, write_jsonl):
    data = write_jsonl("d.jsonl", [{"prompt": "p", "completion": "c"}])
    assert cli_main(["train", "--data", data, "--model", tiny_model, "--chat-template", "nope"]) == 2
    assert "chat_template: got 'nope'" in capsys.readouterr().err


def test_training_uses_the_template_and_the_run_keeps_it(tiny_config, tiny_model, write_jsonl, tmp_path):
    path = tmp_path / "hash.jinja"
    path.write_text(HASH_TEMPLATE)
    turns = [
        {"from": "human", "value": "Rate for EUR?"},
        {"from": "gpt", "value": "CALL rate(EUR)"},
        {"from": "tool", "value": "1.08"},
        {"from": "gpt", "value": "1.08"},
    ]
    data = write_jsonl("tools.jsonl", [{"conversations": turns}])
    result = train(tiny_config(data=[data], max_steps=1, batch_size=1, chat_template=str(path)), progress_bar=False)
    assert result.status == "succeeded"
    saved = load_tokenizer(str(result.run_dir / "tokenizer"))
    assert saved.chat_template == HASH_TEMPLATE
    messages = [
        {"role": "user", "content": "q"},
        {"role": "tool", "content": "r"},
        {"role": "assistant", "content": "a"},
    ]
    assert saved.apply_chat_template(messages, tokenize=False) == "### user\nq\n### tool\nr\n### assistant\na\n"
    # Only the answers are learned: the tool's output is context, like the user's turns.
    encoded = encode_chat(saved, messages)
    learned = saved.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != -100])
    assert learned.strip() == "a"
    assert load_tokenizer(tiny_model).chat_template == CHAT_TEMPLATES["chatml"]  # the base model is untouched
