"""Data loading: every format, every malformed case reported with file, line and what is wrong."""

from __future__ import annotations

import json

import pytest

from backend.prompts import ExtractionSchema, extraction_answer
from backend.training.data import DatasetError, check_usable, load_jsonl, split
from conftest import EXAMPLES


def test_every_example_format_loads_to_chats():
    data = load_jsonl([EXAMPLES / f for f in ("chat.jsonl", "alpaca.jsonl", "dolly.jsonl", "receipts.jsonl")])
    assert data.issues == []
    assert dict(data.formats) == {"chat": 4, "alpaca": 4, "dolly": 3, "extraction": 64}
    assert all(ex.messages[-1]["role"] == "assistant" for ex in data.examples)
    assert data.schema.names == ["company", "date", "address", "total"]
    alpaca = next(ex for ex in data.examples if ex.format == "alpaca")
    assert alpaca.messages == [
        {"role": "user", "content": "Give the currency of this amount as an ISO 4217 code.\n\nRM 45.90"},
        {"role": "assistant", "content": "MYR"},
    ]


def test_extraction_record_uses_the_shared_template(write_jsonl):
    path = write_jsonl(
        "x.jsonl",
        [
            {"text": "ACME LTD\nTOTAL 9.00", "fields": {"company": "ACME LTD", "total": "9.00"}},
            {"text": "SHOP 2\n01/02/2020", "fields": {"company": "SHOP 2", "date": "01/02/2020"}},
        ],
    )
    data = load_jsonl(path)
    assert data.schema.names == ["company", "total", "date"]
    first = data.examples[0].messages
    assert first[0]["role"] == "system" and "ACME LTD\nTOTAL 9.00" in first[1]["content"]
    assert json.loads(first[2]["content"]) == {"company": "ACME LTD", "total": "9.00", "date": None}
    assert extraction_answer({"total": "1"}, ExtractionSchema.from_names(["a", "total"])) == '{"a": null, "total": "1"}'


def test_sharegpt_and_tool_messages_load_to_chats(write_jsonl):
    tool_turns = [
        {"role": "user", "content": "Rate for EUR?"},
        {"role": "assistant", "content": '{"call": "rate", "args": {"currency": "EUR"}}'},
        {"role": "tool", "content": '{"rate": 1.08}'},
        {"role": "assistant", "content": "1.08"},
    ]
    sharegpt = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Rate for EUR?"},
            {"from": "gpt", "value": '{"call": "rate", "args": {"currency": "EUR"}}'},
            {"from": "tool", "value": '{"rate": 1.08}'},
            {"from": "gpt", "value": "1.08"},
        ]
    }
    data = load_jsonl(write_jsonl("mixed.jsonl", [{"messages": tool_turns}, sharegpt]))
    assert data.issues == []
    assert dict(data.formats) == {"chat": 1, "sharegpt": 1}
    assert data.examples[0].messages == tool_turns
    assert data.examples[1].messages == [{"role": "system", "content": "Be brief."}, *tool_turns]


BAD_LINES = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ({"foo": 1}, "unknown record format"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be one of"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string, got int"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "last message must be the assistant's answer"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}, "(the answer) is empty"),
    ({"conversations": {}}, "field 'conversations' must be a non-empty list"),
    ({"conversations": [{"from": "bot", "value": "x"}]}, "conversations[0].from must be one of"),
    ({"conversations": [{"from": "human", "value": None}]}, "conversations[0].value must be a string, got NoneType"),
    ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "tool", "value": "{}"}]}, "conversations[1]: the last"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]}, "got role 'tool'"),
    ({"instruction": "Do it", "output": 3}, "field 'output' must be a string, got int"),
    ({"instruction": "", "output": "x"}, "field 'instruction' is empty"),
    ({"text": "doc", "fields": []}, "field 'fields' must be a non-empty object, got list"),
    ({"text": 7, "fields": {"a": 1}}, "field 'text' must be a string, got int"),
]


@pytest.mark.parametrize("line,expected", BAD_LINES, ids=[e for _, e in BAD_LINES])
def test_each_malformed_line_is_reported_with_file_and_line(write_jsonl, line, expected):
    good = {"prompt": "p", "completion": "c"}
    path = write_jsonl("bad.jsonl", [good, line, good | {"completion": "d"}])
    data = load_jsonl(path)
    assert len(data.examples) == 2
    assert len(data.issues) == 1
    issue = str(data.issues[0])
    assert issue.startswith(f"{path}:2: ") and expected in issue
    with pytest.raises(DatasetError, match="1 invalid line") as err:
        check_usable(data, skip_invalid=False, source=path)
    assert f"{path}:2:" in str(err.value) and "--skip-invalid" in str(err.value)
    check_usable(data, skip_invalid=True, source=path)  # opting in trains on the valid lines


def test_non_utf8_line_is_reported(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    data = load_jsonl(path)
    assert [str(i) for i in data.issues] == [f"{path}:2: not UTF-8 (invalid continuation byte at byte 15)"]


def test_empty_and_all_invalid_datasets_are_refused(write_jsonl):
    empty = write_jsonl("empty.jsonl", [])
    with pytest.raises(DatasetError, match="has no examples"):
        check_usable(load_jsonl(empty), skip_invalid=True, source=empty)
    bad = write_jsonl("bad.jsonl", ["{", "[]"])
    with pytest.raises(DatasetError, match="all lines are invalid") as err:
        check_usable(load_jsonl(bad), skip_invalid=True, source=bad)
    assert f"{bad}:1:" in str(err.value) and f"{bad}:2:" in str(err.value)


def test_missing_file_is_named():
    with pytest.raises(DatasetError, match="does-not-exist.jsonl does not exist"):
        load_jsonl("does-not-exist.jsonl")


def test_fields_outside_a_given_schema_are_reported(write_jsonl):
    path = write_jsonl("x.jsonl", [{"text": "doc", "fields": {"total": "1", "colour": "red"}}])
    data = load_jsonl(path, schema=ExtractionSchema.from_names(["total"]))
    assert "fields ['colour'] are not in the schema ['total']" in str(data.issues[0])


def test_duplicates_are_counted_and_dropped(write_jsonl):
    row = {"prompt": "p", "completion": "c"}
    data = load_jsonl(write_jsonl("d.jsonl", [row, row, row, {"prompt": "q", "completion": "c"}]))
    assert (len(data.examples), data.duplicates) == (2, 2)
    assert len(load_jsonl(write_jsonl("d2.jsonl", [row, row]), dedupe=False).examples) == 2


def test_split_is_seeded_and_disjoint():
    examples = load_jsonl(EXAMPLES / "receipts.jsonl").examples
    train_a, val_a = split(examples, val_fraction=0.25, seed=1)
    train_b, val_b = split(examples, val_fraction=0.25, seed=1)
    _, val_c = split(examples, val_fraction=0.25, seed=2)
    assert [e.origin for e in val_a] == [e.origin for e in val_b] != [e.origin for e in val_c]
    assert len(val_a) == 16 and not {e.origin for e in val_a} & {e.origin for e in train_a}
