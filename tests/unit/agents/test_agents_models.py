"""The models the agents can be given, against the real service: the tunebridge service itself
(`/v1/extract`) and an OpenAI-compatible server by base URL (our own `/v1/chat/completions` with
`response_format`, as vLLM would be called) — plus the openai SDK's structured output on it."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from agents.models import ModelError, OpenAIModel, ServiceModel
from agents.schemas import Invoice, Receipt

TEXT = "HARBOUR HARDWARE LTD\nRingsend Road, Dublin 4\nDATE: 26/11/2026\nTOTAL 47.83\nTHANK YOU"


def test_service_model_extracts_with_confidence_and_grounding(service, tiny_model):
    model = ServiceModel(service["url"], api_key=service["key"], model=tiny_model)
    out = model.extract(TEXT, Receipt)
    Receipt.model_validate(out.fields)  # constrained by the service: always the schema's shape
    assert set(out.confidence) == set(Receipt.model_fields) and set(out.grounding) == set(Receipt.model_fields)
    assert isinstance(model.explain("receipt", "review", ["total above 5000"]), str)


def test_service_model_asks_for_candidate_ranking(service, tiny_model):
    model = ServiceModel(service["url"], api_key=service["key"], model=tiny_model, rank="typed")
    with pytest.raises(ModelError, match="422.*has no label conventions"):  # a base model learned none
        model.extract(TEXT, Receipt)


def test_rank_needs_tunebridges_engine():
    import argparse

    from agents.cli import add_commands, build_model

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["extract", "x.txt", "--openai-url", "http://h/v1", "--model", "m", "--rank", "typed"])
    with pytest.raises(SystemExit, match="--rank needs tunebridge's engine"):
        build_model(args)


def test_openai_compatible_model_gets_schema_valid_answers(service, tiny_model):
    model = OpenAIModel(f"{service['url']}/v1", model=tiny_model, api_key=service["key"])
    out = model.extract(TEXT, Invoice)
    Invoice.model_validate_json(out.raw)  # nested models, line items: the server decoded under the schema
    assert out.confidence == {k: None for k in out.fields}  # no per-field probabilities over this protocol


def test_openai_sdk_structured_output(service, tiny_model):
    client = openai.OpenAI(base_url=f"{service['url']}/v1", api_key=service["key"])
    schema = {
        "type": "object",
        "properties": {"decision": {"enum": ["approve", "review", "reject"]}, "amount": {"type": "number"}},
        "required": ["decision", "amount"],
    }
    reply = client.chat.completions.create(
        model=tiny_model,
        messages=[{"role": "user", "content": "Decide."}],
        response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
    try:
        anything = client.chat.completions.create(
            model=tiny_model,
            messages=[{"role": "user", "content": "JSON?"}],
            response_format={"type": "json_object"},
            max_tokens=40,
        )
    except openai.UnprocessableEntityError as exc:  # a free-form object that outgrew max_tokens: refused, not cut
        assert "max_tokens" in exc.body["message"] and exc.body["param"] == "max_tokens"
    else:
        assert anything.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(anything.choices[0].message.content), dict)
    with pytest.raises(openai.UnprocessableEntityError) as short:  # too small for the schema's longest answer
        client.chat.completions.create(
            model=tiny_model,
            messages=[{"role": "user", "content": "Decide."}],
            max_tokens=3,
            response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
        )
    assert short.value.body["param"] == "max_tokens" and "raise max_tokens" in short.value.body["message"]
