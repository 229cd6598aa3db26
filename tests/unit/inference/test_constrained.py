"""Schema-constrained decoding, confidence and grounding (tiny random model: validity must not depend
on the model knowing anything)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from backend.errors import InvalidRequest
from backend.inference.bundle import AdapterBundle
from backend.inference.constrained import bound_schema, compile_grammar, field_confidence, flat_schema, value_spans
from backend.inference.decoding import Constrained, common_prefix, constrained_batch, constrained_generate
from backend.inference.grounding import locate
from backend.inference.pool import ModelPool, stop_ids
from backend.inference.spec import ExtractionSpec
from backend.prompts import ExtractionSchema, extraction_messages

LINE_ITEMS = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "currency": {"enum": ["MYR", "USD", "EUR"]},
        "total": {"type": "number"},
        "paid": {"type": "boolean"},
        "date": {"type": "string", "pattern": r"^\d{2}/\d{2}/\d{4}$"},
        "note": {"type": ["string", "null"]},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 20}, "id": {"type": "integer"}},
            "required": ["name"],
        },
        "items": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "description": {"type": "string", "maxLength": 30},
                    "qty": {"type": "integer"},
                    "amount": {"type": "number"},
                },
                "required": ["description", "amount"],
            },
        },
    },
    "required": ["vendor", "currency", "total", "items", "customer"],
}

SCHEMAS = {
    "flat receipt": flat_schema(["company", "date", "address", "total"]),
    "line items, enums, nested, nullable, optional": LINE_ITEMS,
    "enum only": {
        "type": "object",
        "properties": {"decision": {"enum": ["approve", "review", "reject"]}},
        "required": ["decision"],
    },
}
DOCS = [
    "ACME Tools Ltd\nInvoice 2024-117\nDate: 03/05/2024\n2 x hammer 25.00\nTotal due: 1,250.00 MYR",
    "Kedai Runcit Maju, 12 Jalan Besar\n25/12/2018 8:13 PM\nTOTAL RM 9.00",
]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    pool = ModelPool(device="cpu")
    with pool.using(AdapterBundle(tiny_model)) as (model, tokenizer, _):
        yield model, tokenizer


@pytest.mark.parametrize("name", list(SCHEMAS))
@pytest.mark.parametrize("doc", DOCS)
def test_every_answer_parses_and_validates(tiny, name, doc):
    model, tokenizer = tiny
    bounded, budget = bound_schema(SCHEMAS[name])
    prompt = tokenizer.apply_chat_template(
        extraction_messages(doc, ExtractionSchema.from_json_schema(bounded)), add_generation_prompt=True, tokenize=True
    )
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    result = constrained_generate(
        model,
        tokenizer,
        prompt,
        compile_grammar(bounded),
        max_new_tokens=budget,
        device="cpu",
        eos_ids=stop_ids(model, tokenizer),
    )
    assert result.finish_reason == "stop"
    answer = json.loads(result.text)  # a random model, and still valid
    jsonschema.validate(answer, SCHEMAS[name])
    assert len(result.tokens) == len(result.logprobs) and result.forward_passes <= len(result.tokens) + 1
    assert all(lp is None or lp <= 0 for lp in result.logprobs)


def test_forced_stretches_are_not_decoded_token_by_token(tiny):
    model, tokenizer = tiny
    schema = flat_schema(["a_long_field_name_that_is_forced", "another_forced_key_name"])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=True
    )
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    result = constrained_generate(
        model,
        tokenizer,
        prompt,
        compile_grammar(bound_schema(schema)[0]),
        max_new_tokens=bound_schema(schema)[1],
        device="cpu",
        eos_ids=stop_ids(model, tokenizer),
    )
    assert result.forced >= 10  # the keys' tokens
    chosen = sum(p is not None for p in result.logprobs)
    # one pass per chosen token, the stretch forced after a token fed with it; one for the opening
    # stretch and one whose choice was the end
    assert result.forward_passes <= chosen + 2, (result.forward_passes, chosen)


def test_value_spans_and_confidence():
    text = '{"company":"ACME","date":null,"total":"9.00"}'
    assert value_spans(text, ["company", "date", "total"]) == {"company": (12, 16), "date": (25, 29), "total": (39, 43)}
    spaced = '{"company": "ACME", "date": null}'
    assert {k: spaced[a:b] for k, (a, b) in value_spans(spaced, ["company", "date"]).items()} == {
        "company": "ACME",
        "date": "null",
    }
    spans = [(0, 11), (11, 12), (12, 14), (14, 16), (16, 25), (25, 29), (29, 39), (39, 43), (43, 45)]
    result = Constrained(text, list(range(9)), [None, None, -0.1, -0.3, None, None, None, -2.0, None], spans, "stop", 5)
    conf = field_confidence(result, ["company", "date", "total", "absent"])
    assert conf["company"] == pytest.approx(2.718281828**-0.2)
    assert conf["date"] == 1.0 and conf["total"] == pytest.approx(2.718281828**-2.0) and conf["absent"] is None


SOURCE = "ACME TOOLS SDN BHD\nNO 5,  JALAN   BESAR\nDATE 25/12/2018\nTOTAL RM 12.50"


@pytest.mark.parametrize(
    "value,match,span_text",
    [
        ("acme tools sdn bhd", "exact", "ACME TOOLS SDN BHD"),
        ("12.50", "number", "12.50"),
        ("NO 5, JALAN BESAR", "normalized", "NO 5,  JALAN   BESAR"),
        ("NO 5, JALAN BESSAR", "fuzzy", None),
    ],
)
def test_grounding_points_at_the_right_characters(value, match, span_text):
    found = locate(value, SOURCE)
    assert found["match"] == match
    if span_text is not None:
        assert SOURCE[found["start"] : found["end"]] == span_text
    else:
        assert "JALAN" in SOURCE[found["start"] : found["end"]]


@pytest.mark.parametrize("value", ["ZENITH CORPORATION", "2018-12-25", None, ""])
def test_a_value_absent_from_the_document_is_not_grounded(value):
    assert locate(value, SOURCE) is None


def test_a_field_the_model_was_not_trained_on_gets_lower_confidence(tiny_config, write_jsonl):
    from backend.inference.extraction import extract
    from backend.models.adapters import find_adapter
    from backend.training.trainer import train

    docs = [
        {"text": DOCS[0], "fields": {"company": "ACME Tools Ltd", "total": "1,250.00"}},
        {"text": DOCS[1], "fields": {"company": "Kedai Runcit Maju", "total": "9.00"}},
    ]
    run = train(
        tiny_config(
            data=[write_jsonl("docs.jsonl", docs)], max_steps=200, batch_size=1, learning_rate=0.005, warmup_ratio=0.0
        ),
        progress_bar=False,
    )  # at lr 0.02 the trained fields' confidence depended on the CPU's kernels (AVX2 vs AVX-512)
    ref = find_adapter(run.run_dir)
    target = AdapterBundle(ref.base_model, "docs", str(ref.path), str(ref.tokenizer_path))
    names = ["company", "total", "invoice_number"]
    out = extract(ModelPool(device="cpu"), target, text=DOCS[0], spec=ExtractionSpec.from_names(names))
    trained = min(out["confidence"]["company"], out["confidence"]["total"])
    assert list(json.loads(out["raw"])) == names  # the schema's order, as in training
    assert out["confidence"]["invoice_number"] is not None and out["confidence"]["invoice_number"] < trained, out


def _prompt(tokenizer, doc: str, names: list[str]) -> list[int]:
    ids = tokenizer.apply_chat_template(
        extraction_messages(doc, ExtractionSchema.from_names(names)), add_generation_prompt=True, tokenize=True
    )
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


@pytest.fixture(scope="module")
def tiny_fp32(tiny_model):
    """fp32 and peaked logits (lm_head scaled): greedy choices have no near-ties for batch shapes to flip."""
    import torch

    pool = ModelPool(device="cpu", dtype="float32")
    with pool.using(AdapterBundle(tiny_model)) as (model, tokenizer, _):
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(8.0)
        yield model, tokenizer


def test_a_batch_decodes_each_document_as_it_would_alone(tiny_fp32):
    """Rows of different lengths, schemas and budgets, forced stretches of different widths per step,
    rows finishing at different times: each row's answer and log-probabilities equal its solo run."""
    model, tokenizer = tiny_fp32
    eos = stop_ids(model, tokenizer)
    cases = [
        (DOCS[0], flat_schema(["company", "total"])),
        (DOCS[1], SCHEMAS["enum only"]),
        (DOCS[1] * 3, flat_schema(["company", "date", "address", "total"])),
        (DOCS[0][:20], LINE_ITEMS),
    ]
    prompts, grammars, budgets = [], [], []
    for doc, schema in cases:
        bounded, budget = bound_schema(schema)
        prompts.append(_prompt(tokenizer, doc, list(bounded["properties"])))
        grammars.append(compile_grammar(bounded))
        budgets.append(min(budget, 60))
    batch = constrained_batch(model, tokenizer, prompts, grammars, max_new_tokens=budgets, device="cpu", eos_ids=eos)
    for prompt, grammar, budget, together in zip(prompts, grammars, budgets, batch):
        alone = constrained_generate(
            model, tokenizer, prompt, grammar, max_new_tokens=budget, device="cpu", eos_ids=eos
        )
        assert together.tokens == alone.tokens and together.finish_reason == alone.finish_reason
        assert together.logprobs == pytest.approx(alone.logprobs, abs=1e-3)
    assert len({len(r.tokens) for r in batch}) > 1  # rows really did finish at different steps


def test_a_row_whose_caller_left_leaves_the_batch_and_the_others_go_on(tiny_fp32):
    """A caller that disconnects mid-decoding: its row stops at the next step (finish "cancelled"),
    and the other rows of the batch decode exactly as they would have."""
    model, tokenizer = tiny_fp32
    eos = stop_ids(model, tokenizer)
    bounded, budget = bound_schema(flat_schema(["company", "date", "address", "total"]))
    prompts = [
        _prompt(tokenizer, DOCS[0], list(bounded["properties"])),
        _prompt(tokenizer, DOCS[1], list(bounded["properties"])),
    ]
    grammars = [compile_grammar(bounded)] * 2
    steps = {"n": 0}

    def left_after_three_steps() -> bool:
        steps["n"] += 1
        return steps["n"] > 3

    both = constrained_batch(
        model,
        tokenizer,
        prompts,
        grammars,
        max_new_tokens=60,
        device="cpu",
        eos_ids=eos,
        gone=[left_after_three_steps, None],
    )
    alone = constrained_generate(
        model, tokenizer, prompts[1], grammars[1], max_new_tokens=60, device="cpu", eos_ids=eos
    )
    assert both[0].finish_reason == "cancelled" and len(both[0].tokens) < len(alone.tokens)
    assert both[1].tokens == alone.tokens and both[1].finish_reason == alone.finish_reason


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_a_kept_prompt_is_the_prompt_as_read_alone(tiny_fp32, shared_prefix):
    """Rows of different lengths (left-padded in the batch), leaving at different passes, with drafted
    guesses: the prompt part kept for a row is the cache a plain read of its prompt gives (the same
    next-token log-probabilities, the same logits for tokens fed after it), only where asked, and
    `keep_prompt` is asked with each row's final answer."""
    import torch
    from transformers import DynamicCache

    model, tokenizer = tiny_fp32
    eos = stop_ids(model, tokenizer)
    bounded, _ = bound_schema(flat_schema(["company", "date", "address", "total"]))
    prompts = [_prompt(tokenizer, d, list(bounded["properties"])) for d in [DOCS[0], DOCS[1], DOCS[0] * 2]]
    prefix = None
    if shared_prefix:
        start = min(common_prefix(prompts[0], p) for p in prompts) - 1  # the template before the document
        assert start > 10
        head = DynamicCache()
        with torch.no_grad():
            model(input_ids=torch.tensor([prompts[0][:start]]), cache=head, use_cache=True)
        prefix = (prompts[0][:start], head)
    asked: dict[int, str] = {}

    def keep(i: int, text: str) -> bool:
        asked[i] = text
        return i != 1

    out = constrained_batch(
        model,
        tokenizer,
        prompts,
        [compile_grammar(bounded)] * 3,
        max_new_tokens=[80, 30, 80],
        device="cpu",
        eos_ids=eos,
        draft=4,
        prefix=prefix,
        keep_prompt=keep,
    )
    assert asked == {i: r.text for i, r in enumerate(out)} and len({len(r.tokens) for r in out}) > 1
    assert out[1].prompt is None
    follow = tokenizer('{"company": "', add_special_tokens=False)["input_ids"]
    for prompt, result in zip(prompts, out):
        if result.prompt is None:
            continue
        with torch.no_grad():
            plain = model(input_ids=torch.tensor([prompt + follow])).logits[0].float()
            cache = result.prompt.cache
            assert cache.get_seq_length() == len(prompt)
            after = model(
                input_ids=torch.tensor([follow]),
                position_ids=torch.arange(len(prompt), len(prompt) + len(follow)).unsqueeze(0),
                cache=cache,
                use_cache=True,
            ).logits[0]
        expected = torch.log_softmax(plain[len(prompt) - 1], dim=-1)
        assert torch.allclose(result.prompt.next_logprobs, expected, atol=1e-4)
        assert torch.allclose(after, plain[len(prompt) :], atol=1e-4)


def test_the_shared_prompt_prefix_is_computed_once_and_changes_nothing(tiny_model):
    from backend.inference.extraction import Document, extract_many

    names = ["company", "date", "total"]
    docs = [Document(d, ExtractionSpec.from_names(names)) for d in DOCS * 2]
    pool = ModelPool(device="cpu", dtype="float32")
    plain = extract_many(pool, AdapterBundle(tiny_model), docs, prefix_cache=False, batch_size=1)
    assert pool.prefixes.hits + pool.prefixes.misses == 0
    cached = extract_many(pool, AdapterBundle(tiny_model), docs, batch_size=2)
    again = extract_many(pool, AdapterBundle(tiny_model), docs[:1])
    assert pool.prefixes.misses == 1 and pool.prefixes.hits == 2  # one prefix, computed once, read twice
    assert cached[0]["usage"]["cached_prompt_tokens"] > 20 == plain[0]["usage"]["cached_prompt_tokens"] + 20
    assert [r["raw"] for r in cached] == [r["raw"] for r in plain] and again[0]["raw"] == plain[0]["raw"]


def test_a_pydantic_model_is_a_schema_nested_models_and_all(tiny):
    """pydantic writes nested models as $refs; they are inlined and bounded, and every answer of a
    random model validates against the pydantic model itself."""
    from typing import Literal

    from pydantic import BaseModel, Field

    from backend.inference.constrained import schema_of
    from backend.inference.extraction import Document, extract_many

    class Line(BaseModel):
        description: str = Field(max_length=40)
        amount: float

    class Invoice(BaseModel):
        vendor: str = Field(description="who issued it", max_length=40)
        currency: Literal["MYR", "USD", "EUR"]
        issued: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
        lines: list[Line] = Field(max_length=3)

    assert "$ref" not in json.dumps(schema_of(Invoice)) and "$defs" not in json.dumps(schema_of(Invoice))
    pool = ModelPool(device="cpu")
    docs = [Document(d, ExtractionSpec.of(Invoice)) for d in DOCS]
    for out in extract_many(pool, AdapterBundle(tiny[0].name_or_path), docs):
        assert out["finish_reason"] == "stop"
        Invoice.model_validate_json(out["raw"])


def test_a_recursive_or_foreign_reference_is_refused_with_the_path():
    from backend.inference.constrained import schema_of

    node = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(InvalidRequest, match="Node -> Node is recursive"):
        schema_of(node)
    with pytest.raises(InvalidRequest, match="not a local definition"):
        schema_of({"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}})


def test_eval_calibrate_saves_platt_scaling_that_extraction_then_applies(tiny_config, write_jsonl, tmp_path):
    import subprocess
    import sys

    from backend.inference.extraction import Document, extract_many
    from backend.labels.calibration import Platt
    from backend.models.adapters import find_adapter

    data, run = _train_on_docs(tiny_config, write_jsonl)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "eval",
            "--data",
            data,
            "--adapter",
            str(run.run_dir),
            "--no-base",
            "--constrained",
            "--rank",
            "none",  # every answer's decoding confidence is a calibration pair
            "--calibrate",
            "--out",
            str(tmp_path / "eval"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "calibration" in done.stdout and "out of fold" in done.stdout
    ref = find_adapter(run.run_dir)
    platt = Platt.load(ref.path)
    assert platt is not None and platt.pairs >= 20
    target = AdapterBundle(ref.base_model, "docs", str(ref.path), str(ref.tokenizer_path))
    names = ["company", "total"]
    out = extract_many(ModelPool(device="cpu"), target, [Document(DOCS[0], ExtractionSpec.from_names(names))])[0]
    assert out["calibrated"] is True
    for name in names:
        ranked = out["ranking"].get(name)
        if ranked and ranked["choice"] != ranked["free"]:  # ranking chose it: its candidate's share
            assert out["confidence"][name] == ranked["share"]
        else:
            assert out["confidence"][name] == pytest.approx(platt(out["confidence_raw"][name]))
    plain = extract_many(
        ModelPool(device="cpu"), target, [Document(DOCS[0], ExtractionSpec.from_names(names))], rank=False
    )
    for name in names:
        assert plain[0]["confidence"][name] == pytest.approx(platt(plain[0]["confidence_raw"][name]))


def test_eval_thresholds_are_refused_on_too_little_data_and_saved_where_the_target_allows(
    tiny_config, write_jsonl, tmp_path
):
    import subprocess
    import sys

    from backend.inference.extraction import Document, extract_many
    from backend.labels.calibration import Platt
    from backend.labels.thresholds import FILE, Thresholds
    from backend.models.adapters import find_adapter

    data, run = _train_on_docs(tiny_config, write_jsonl)
    ref = find_adapter(run.run_dir)

    def evaluate(*extra: str, out: str):
        cmd = [sys.executable, "-m", "backend.cli", "eval", "--data", data, "--adapter", str(run.run_dir), "--no-base"]
        return subprocess.run(
            [*cmd, "--constrained", "--rank", "none", *extra, "--out", str(tmp_path / out)],
            capture_output=True,
            text=True,
        )

    refused = evaluate("--thresholds", out="refused")  # 12 answers a field cannot show 0.99 precision
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "thresholds not saved" in refused.stderr and "company 12 pairs" in refused.stderr
    assert "needs at least 268 accepted answers" in refused.stderr
    assert not (ref.path / FILE).exists()
    report = (tmp_path / "refused" / "report.md").read_text()
    assert "## Selective automation" in report and "| overall | 24 |" in report and "refused" in report
    assert (tmp_path / "refused" / "precision_coverage.png").stat().st_size > 0

    # a low target a dozen right answers can show, fitted with a new calibration in the same run
    saved = evaluate("--calibrate", "--thresholds", "--target-precision", "0.3", out="saved")
    assert saved.returncode == 0, saved.stderr[-2000:]
    thresholds, platt = Thresholds.load(ref.path), Platt.load(ref.path)
    assert thresholds is not None and thresholds.target == 0.3 and "thresholds for precision 0.3" in saved.stdout
    assert thresholds.calibration == {"a": platt.a, "b": platt.b}
    fitted = {f: t for f, t in thresholds.fields.items() if t.threshold is not None}
    assert fitted and all(t.lower_bound >= 0.3 and t.support == 12 for t in fitted.values())
    result = json.loads((tmp_path / "saved" / "eval.json").read_text())
    assert result["candidates"][run.run_dir.name]["extraction"]["selective"]["thresholds"]["target"] == 0.3
    target = AdapterBundle(ref.base_model, "docs", str(ref.path), str(ref.tokenizer_path))
    spec = ExtractionSpec.from_names(["company", "total"])
    out = extract_many(ModelPool(device="cpu"), target, [Document(DOCS[0], spec)], rank=False)[0]
    assert out["target_precision"] == 0.3 and set(out["automation"]) == {"company", "total"}
    for name, marked in out["automation"].items():
        assert marked == thresholds.mark(name, out["confidence"][name], grounded=out["grounding"][name] is not None)
    assert out["review"] == [n for n in ("company", "total") if out["automation"][n] == "review" and out["fields"][n]]


def test_thresholds_cross_fitted_on_two_evaluations_count_every_answer_once(tiny_config, write_jsonl, tmp_path):
    """`tunebridge thresholds` pools evaluations of the parts of the data (here one adapter stands in
    for the part adapters) and saves the thresholds the adapter then serves."""
    import subprocess
    import sys
    from pathlib import Path

    from backend.labels.thresholds import Thresholds
    from backend.models.adapters import find_adapter

    data, run = _train_on_docs(tiny_config, write_jsonl)
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    parts = [write_jsonl(f"part-{k}.jsonl", rows[k::2]) for k in range(2)]

    def cli(*args: str):
        return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True)

    for k, part in enumerate(parts):
        cmd = ["eval", "--data", part, "--adapter", str(run.run_dir), "--no-base", "--constrained"]
        done = cli(*cmd, "--out", str(tmp_path / f"eval-{k}"))
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads((tmp_path / f"eval-{k}" / "eval.json").read_text())
        assert report["candidates"][run.run_dir.name]["extraction"]["selective"]["calibration"] is None
    reports = [str(tmp_path / "eval-0"), str(tmp_path / "eval-1")]
    twice = cli("thresholds", "--adapter", str(run.run_dir), "--from", reports[0], reports[0])
    assert twice.returncode == 2 and "both answer the document at" in twice.stderr
    saved = cli("thresholds", "--adapter", str(run.run_dir), "--from", *reports, "--target-precision", "0.3")
    assert saved.returncode == 0, saved.stderr[-2000:]
    assert saved.stdout.count("6 documents answered by") == 2 and "thresholds for precision 0.3" in saved.stdout
    thresholds = Thresholds.load(find_adapter(run.run_dir).path)
    assert thresholds is not None and thresholds.target == 0.3 and thresholds.calibration is None
    assert {t.support for t in thresholds.fields.values()} == {12}
    assert any(t.threshold is not None for t in thresholds.fields.values())


def test_the_adapter_ships_its_label_conventions_and_extraction_applies_them(tiny_config, write_jsonl):
    from backend.inference.extraction import Document, extract_many
    from backend.labels.conventions import Conventions
    from backend.models.adapters import find_adapter
    from backend.training.trainer import train

    docs = [
        {
            "text": DOCS[i % 2] + f"\nref {i}",
            "fields": {"company": ["ACME Tools Ltd", "Kedai Runcit Maju"][i % 2], "total": ["1,250.00", "9.00"][i % 2]},
        }
        for i in range(12)
    ]
    run = train(tiny_config(data=[write_jsonl("docs.jsonl", docs)], max_steps=2), progress_bar=False)
    ref = find_adapter(run.run_dir)
    conventions = Conventions.load(ref.path)
    assert run.summary["conventions"] == str(ref.path / "conventions.json")
    assert conventions.fields["total"].kind == "amount" and conventions.fields["total"].decimals == 2
    assert conventions.fields["company"].kind == "text" and len(conventions.exemplars.heads) == 12
    target = AdapterBundle(ref.base_model, "docs", str(ref.path), str(ref.tokenizer_path))
    names = ["company", "total"]
    doc = Document(DOCS[1] + "\nref 99", ExtractionSpec.from_names(names))
    pool = ModelPool(device="cpu")
    out = extract_many(pool, target, [doc], rank=False)[0]
    assert out["fields"] == conventions.apply(out["model_fields"], doc.text)
    plain = extract_many(pool, target, [doc], conventions=False)[0]  # nor the default ranking they drive
    assert "model_fields" not in plain and "ranking" not in plain and plain["fields"] == out["model_fields"]


@pytest.mark.parametrize("draft", [3, 8])
def test_copy_drafting_changes_no_answer(tiny_fp32, draft):
    """Guesses copied from the prompt are verified against the greedy choice: with or without them the
    answers and log-probabilities are the same (a random model rejects most guesses: the hard case).
    Strings without null: this random model answers null where it may, and null leaves nothing to guess."""
    model, tokenizer = tiny_fp32
    eos = stop_ids(model, tokenizer)
    names = ["company", "date", "address", "total"]
    strings = {
        "type": "object",
        "properties": {n: {"type": "string", "minLength": 4, "maxLength": 40} for n in names},
        "required": names,
    }
    bounded, budget = bound_schema(strings)
    prompts = [_prompt(tokenizer, d, list(bounded["properties"])) for d in DOCS + [DOCS[0] * 2]]
    grammars = [compile_grammar(bounded)] * len(prompts)
    plain = constrained_batch(model, tokenizer, prompts, grammars, max_new_tokens=80, device="cpu", eos_ids=eos)
    drafted = constrained_batch(
        model, tokenizer, prompts, grammars, max_new_tokens=80, device="cpu", eos_ids=eos, draft=draft
    )
    for a, b in zip(plain, drafted):
        assert a.tokens == b.tokens and a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)
    assert sum(r.extra["drafted"] for r in drafted) > 0


def test_copy_drafting_saves_passes_when_the_model_copies(tiny_config, write_jsonl):
    """An adapter that learned to copy values out of the document accepts most copied guesses."""
    from backend.inference.extraction import Document, extract_many
    from backend.models.adapters import find_adapter
    from backend.training.trainer import train

    docs = [
        {"text": DOCS[0], "fields": {"company": "ACME Tools Ltd", "total": "1,250.00 MYR"}},
        {"text": DOCS[1], "fields": {"company": "Kedai Runcit Maju, 12 Jalan Besar", "total": "RM 9.00"}},
    ]
    run = train(
        tiny_config(
            data=[write_jsonl("docs.jsonl", docs)], max_steps=200, batch_size=1, learning_rate=0.005, warmup_ratio=0.0
        ),
        progress_bar=False,
    )
    ref = find_adapter(run.run_dir)
    target = AdapterBundle(ref.base_model, "docs", str(ref.path), str(ref.tokenizer_path))
    names = ["company", "total"]
    items = [Document(d, ExtractionSpec.from_names(names)) for d in DOCS]
    pool = ModelPool(device="cpu", dtype="float32")
    plain = extract_many(pool, target, items, batch_size=1, draft=0)
    drafted = extract_many(pool, target, items, batch_size=1, draft=8)
    assert [r["raw"] for r in drafted] == [r["raw"] for r in plain]
    assert json.loads(drafted[1]["raw"])["company"] == "Kedai Runcit Maju, 12 Jalan Besar"  # it did learn to copy
    assert sum(r["usage"]["forward_passes"] for r in drafted) < 0.7 * sum(r["usage"]["forward_passes"] for r in plain)
    assert sum(r["usage"]["accepted_draft_tokens"] for r in drafted) > 10


def test_numbers_and_nested_answers_are_grounded_leaf_by_leaf():
    from backend.inference.grounding import ground

    text = "Widget x2   125.00\nService     1.250,50\nTotal due: 1,375.50 EUR\nVendor: ACME GmbH"
    spans = ground(
        {
            "vendor": {"name": "ACME GmbH", "vat_id": None},
            "line_items": [{"amount": 125.0}, {"amount": 1250.5}],
            "total": 1375.5,
            "tax": 25.0,
        },
        text,
    )
    assert text[spans["vendor.name"]["start"] : spans["vendor.name"]["end"]] == "ACME GmbH"
    assert text[spans["line_items[0].amount"]["start"] : spans["line_items[0].amount"]["end"]] == "125.00"
    assert text[spans["line_items[1].amount"]["start"] : spans["line_items[1].amount"]["end"]] == "1.250,50"
    assert text[spans["total"]["start"] : spans["total"]["end"]] == "1,375.50"
    assert spans["tax"]["match"] == "partial"  # "25.00" only occurs inside "125.00": no evidence
    assert spans["vendor.vat_id"] is None


def _train_on_docs(tiny_config, write_jsonl):
    """(data file, training result): the tiny model trained 30 steps on 12 records of the two DOCS."""
    from backend.training.trainer import train

    docs = [
        {
            "text": DOCS[i % 2] + f"\nref {i}",
            "fields": {"company": ["ACME Tools Ltd", "Kedai Runcit Maju"][i % 2], "total": ["1,250.00", "9.00"][i % 2]},
        }
        for i in range(12)
    ]
    data = write_jsonl("docs.jsonl", docs)
    run = train(
        tiny_config(data=[data], max_steps=30, batch_size=2, learning_rate=0.02, warmup_ratio=0.0), progress_bar=False
    )
    return data, run
