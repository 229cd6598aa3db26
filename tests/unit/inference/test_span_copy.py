"""Span-copy decoding (backend/inference/spans.py): copied fields only ever take values found in the
document, whatever the model wants (tiny random model), and the answer stays valid JSON of the schema."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest

from backend.errors import InvalidRequest
from backend.inference.bundle import AdapterBundle
from backend.inference.constrained import bound_schema, flat_schema, schema_of
from backend.inference.extraction import Document, extract_many
from backend.inference.grounding import leaves
from backend.inference.pool import ModelPool
from backend.inference.spans import copy_paths, is_copied, normalise, span_grammar
from backend.inference.spec import ExtractionSpec

NULLABLE = {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}]}
# A random model mostly answers null where it may: strings it must write exercise the spans.
STRINGS = {"type": "object", "additionalProperties": False, "required": ["company", "date", "address", "total"],
           "properties": {n: {"type": "string", "maxLength": 40} for n in ["company", "date", "address", "total"]}}
NESTED = {"type": "object", "additionalProperties": False, "required": ["vendor", "items", "total"], "properties": {
    "vendor": {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
        "name": {"type": "string", "maxLength": 30}, "address": NULLABLE}},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},  # a conversion, not a copy: left to the schema
    "items": {"type": "array", "maxItems": 3, "items": {"type": "object", "additionalProperties": False,
              "required": ["description"],
              "properties": {"description": {"type": "string"}, "amount": {"type": "number"}}}},
    "total": {"type": ["number", "null"]}}}
TYPED = {"type": "object", "additionalProperties": False, "required": ["company", "date", "total"], "properties": {
    "company": NULLABLE,
    "date": {"anyOf": [{"type": "string", "pattern": r"^\d{2}/\d{2}/\d{4}$", "x-copy": True}, {"type": "null"}]},
    "total": {"anyOf": [{"type": "string", "pattern": r"^\d[\d,]*\.\d{2}$", "x-copy": True}, {"type": "null"}]}}}
SCHEMAS = [STRINGS, flat_schema(["company", "date", "address", "total"], max_length=40), NESTED, TYPED]
WORDS = ["ACME", "Sdn", "Bhd", "JALAN", "TAMAN", "No.", "12,", "TOTAL", "RM", "9.00", "1,250.50", "25/12/2018",
         "03/05/2024", 'say "hi"', "C:\\tmp\\", "café", "€5", "tab\there", "\x01", "}", "{", "null", ":", ","]


def random_document(rng: random.Random) -> str:
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 6))]
    return rng.choice(["\n", "\n  ", " \r\n"]).join(lines)


def copied_values(answer, paths: set[str]) -> list[str]:
    return [v for path, v in leaves(answer) if re.sub(r"\[\d+\]", "", path) in paths and isinstance(v, str)]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    pool = ModelPool(device="cpu", dtype="float32")
    with pool.using(AdapterBundle(tiny_model)) as (model, tokenizer, _):
        yield pool, AdapterBundle(tiny_model), tokenizer


def test_a_copied_value_is_always_in_the_document(tiny):
    """Property: random documents (quotes, backslashes, control characters, line breaks, non-ASCII)
    under three schemas (flat, nested with arrays, typed with patterns), decoded by a random model:
    every answer is complete JSON of the schema and every copied value is a substring of the text
    or of its normalised variant."""
    pool, target, _ = tiny
    rng = random.Random(8)
    docs, texts = [], []
    for n in range(40):
        text, schema = random_document(rng), SCHEMAS[n % len(SCHEMAS)]
        docs.append(Document(text, ExtractionSpec.of(schema)))
        texts.append(text)
    results = extract_many(pool, target, docs, span_copy=True)
    copied = 0
    for doc, result in zip(docs, results):
        assert result["finish_reason"] == "stop" and result["valid_json"], result["raw"]
        answer = json.loads(result["raw"])
        jsonschema.validate(answer, doc.spec.json_schema)
        paths = copy_paths(doc.spec.bounded, True)
        for value in copied_values(answer, paths):
            assert is_copied(value, doc.text), (value, doc.text)
            copied += bool(value)
    assert copied >= 20  # the property was really exercised, not met by nulls and empty strings


def test_every_answer_the_grammar_allows_copies_from_the_document(tiny):
    """Property over the grammar alone: random walks (a uniformly random allowed token at each step)
    reach escapes, long spans and line breaks that a greedy random model seldom writes."""
    import numpy as np
    from llguidance import LLMatcher
    from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

    from backend.inference.decoding import ll_tokenizer

    _, _, tokenizer = tiny
    ll = ll_tokenizer(tokenizer, len(tokenizer))
    mask = allocate_token_bitmask(1, ll.vocab_size)
    rng, escaped = random.Random(3), 0
    for n in range(60):
        text, schema = random_document(rng), SCHEMAS[n % len(SCHEMAS)]
        bounded, budget = bound_schema(schema)
        matcher, tokens = LLMatcher(ll, span_grammar(bounded, text, True), log_level=0), []
        while not matcher.is_stopped() and len(tokens) < budget:
            fill_next_token_bitmask(matcher, mask, 0)
            allowed = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[:len(tokenizer)])
            allowed = [int(t) for t in allowed if t != tokenizer.eos_token_id] or [tokenizer.eos_token_id]
            token = rng.choice(allowed)
            assert matcher.consume_token(token)
            tokens.append(token)
        assert matcher.is_stopped(), (tokenizer.decode(tokens), budget)
        answer = json.loads(tokenizer.decode(tokens, skip_special_tokens=True))
        jsonschema.validate(answer, schema)
        for value in copied_values(answer, copy_paths(bounded, True)):
            assert is_copied(value, text), (value, text)
            escaped += any(c in value for c in '"\\\n\x01')
    assert escaped >= 10


def test_which_fields_are_copied():
    from agents.schemas import Invoice

    invoice = bound_schema(schema_of(Invoice))[0]
    everything = copy_paths(invoice, True)
    assert {"invoice_number", "vendor.name", "customer.address", "line_items.description"} <= everything
    assert "currency" not in everything and "total" not in everything  # a pattern, a number
    assert copy_paths(invoice, ["vendor.name", "invoice_date"]) == {"vendor.name", "invoice_date"}
    assert copy_paths(invoice, "invoice_date") == {"invoice_date"}
    assert copy_paths(invoice, False) == set() and span_grammar(invoice, "x", False) is None
    assert copy_paths(bound_schema(TYPED)[0], True) == {"company", "date", "total"}  # x-copy: typed spans
    with pytest.raises(InvalidRequest, match="total is not a string field"):
        copy_paths(invoice, ["total"])


@pytest.fixture(scope="module")
def accepts(tiny):
    """Whether a grammar accepts an answer written out in full (the tiny model's tokens)."""
    from llguidance import LLMatcher

    from backend.inference.decoding import ll_tokenizer

    _, _, tokenizer = tiny
    ll = ll_tokenizer(tokenizer, len(tokenizer))

    def check(grammar: str, answer: str, *, prefix: bool = False) -> bool:
        matcher = LLMatcher(ll, grammar, log_level=0)
        ids = tokenizer.encode(answer, add_special_tokens=False)
        return matcher.try_consume_tokens(ids) == len(ids) and (prefix or matcher.is_accepting())

    return check


DOC = 'KEDAI "MAJU" SDN BHD\nNO. 12, JALAN BESAR,\n   TAMAN INDAH\nC:\\POS\\7 \x01\n25/12/2018  TOTAL RM 1,250.50'


def grammar_for(schema: dict, span_copy=True, text: str = DOC) -> str:
    return span_grammar(bound_schema(schema)[0], text, span_copy)


def test_a_value_over_a_line_break_comes_out_with_one_space(accepts):
    g = grammar_for(flat_schema(["address"]))
    one = lambda v: json.dumps({"address": v}, ensure_ascii=False)  # noqa: E731
    assert normalise(DOC).count("JALAN BESAR, TAMAN INDAH") == 1
    assert accepts(g, one("NO. 12, JALAN BESAR, TAMAN INDAH"))  # the normalised variant
    assert accepts(g, one("NO. 12, JALAN BESAR,\n   TAMAN INDAH"))  # the text as printed
    assert not accepts(g, one("NO. 12, JALAN BESAR,\nTAMAN INDAH"))  # in neither
    assert not accepts(g, one("NO. 12, JALAN BESAR, TAMAN INDAH, KL"))
    assert not accepts(g, one("jalan besar"))  # copied as written


def test_quotes_backslashes_and_control_characters_stay_valid_json(accepts):
    g = grammar_for(flat_schema(["company", "note"]))
    answer = lambda c, n: json.dumps({"company": c, "note": n}, ensure_ascii=False)  # noqa: E731
    assert accepts(g, answer('KEDAI "MAJU" SDN', "C:\\POS\\7 \x01"))  # escaped: \" \\ \u0001
    assert accepts(g, answer('"', "\\"))
    assert not accepts(g, answer('KEDAI "MAJU', "C:\\POS\\8"))  # 8: not in the text
    assert not accepts(g, '{"company": "KEDAI \\"MAJU\\" SDN", "note": "C:\\\\POS\\\\7 \x01"}')  # raw control char
    assert not accepts(g, '{"company": "KEDAI \\u0022MAJU", "note": null}')  # only the escapes the chunks spell


def test_absent_values_null_where_the_schema_allows_it(accepts):
    nullable = grammar_for(flat_schema(["company", "iban"]))
    assert accepts(nullable, '{"company": "KEDAI", "iban": null}')
    assert not accepts(nullable, '{"company": "KEDAI", "iban": "DE89370400440532013000"}')
    strict = {"type": "object", "required": ["company"], "properties": {"company": {"type": "string"}}}
    assert accepts(grammar_for(strict), '{"company": ""}')  # no null in the schema: the empty span
    assert not accepts(grammar_for(strict), '{"company": null}')
    assert accepts(grammar_for(strict, text=""), '{"company": ""}')


def test_typed_fields_are_spans_of_their_pattern(accepts):
    g = grammar_for(TYPED)
    answer = lambda d, t: json.dumps({"company": None, "date": d, "total": t})  # noqa: E731
    assert accepts(g, answer("25/12/2018", "1,250.50")) and accepts(g, answer(None, "250.50"))
    assert not accepts(g, answer("25/12/201", None))  # a span, not a date
    assert not accepts(g, answer("01/01/2020", None))  # a date, not a span
    assert not accepts(g, answer(None, "RM 1,250.50"))  # a span, not an amount
    no_amount = grammar_for(TYPED, text="ACME 25/12/2018")  # no opening quote without a span to follow
    assert accepts(no_amount, '{"company": null, "date": "', prefix=True)
    assert not accepts(no_amount, '{"company": null, "date": null, "total": "', prefix=True)
    limited = grammar_for({"type": "object", "required": ["company"], "properties": {
        "company": {"type": "string", "minLength": 3, "maxLength": 5}}})
    assert accepts(limited, '{"company": "KEDAI"}') and not accepts(limited, '{"company": "KEDAI "}')
    assert not accepts(limited, '{"company": "KE"}')


def test_nested_objects_optional_properties_and_arrays(accepts):
    g = grammar_for(NESTED)
    full = {"vendor": {"name": "KEDAI", "address": "TAMAN INDAH"}, "currency": "MYR",
            "items": [{"description": "JALAN", "amount": 1.5}, {"description": ""}], "total": None}
    assert accepts(g, json.dumps(full))
    assert accepts(g, json.dumps({"vendor": {"name": "KEDAI"}, "items": [], "total": 9.0}))  # optional ones left out
    assert not accepts(g, json.dumps({**full, "currency": "M"}))  # the schema's pattern still holds
    assert not accepts(g, json.dumps({**full, "items": [{"description": "LORONG"}]}))
    assert not accepts(g, json.dumps({"items": [], "total": None}))  # a required property missing
    assert not accepts(g, json.dumps({**full, "items": [{"description": "TAMAN"}] * 4}))  # maxItems
    assert not accepts(g, json.dumps({**full, "items": [{"description": None}]}))  # not nullable here


def test_a_mixed_batch_decodes_each_row_as_alone(tiny):
    """One row with span copy, one without, decoded together: each answer is its solo answer."""
    pool, target, _ = tiny
    schema = STRINGS
    spec = ExtractionSpec.of(schema)
    copy, plain = Document(DOC, spec, span_copy=True), Document(DOC.lower(), spec)
    together = extract_many(pool, target, [copy, plain], batch_size=2)
    alone = [extract_many(pool, target, [doc], batch_size=1, draft=4)[0] for doc in (copy, plain)]
    assert [r["raw"] for r in together] == [r["raw"] for r in alone]
    answer = json.loads(together[0]["raw"])
    assert all(is_copied(v, DOC) for v in answer.values())
    assert all(r["valid_json"] for r in together)
