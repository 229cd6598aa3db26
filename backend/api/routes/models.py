"""`GET /v1/models`, in the OpenAI list format: the base models this service can serve and every
registered adapter (as `name`, `name@version` and `name@alias`), so OpenAI clients can pick one."""

from __future__ import annotations

import importlib.util
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.deps import Authorized, EngineDep, SettingsDep
from backend.api.errors import OPENAI_ERROR_RESPONSES
from backend.errors import NotFound
from backend.models.bundled import BUNDLED
from backend.services import adapters
from backend.services.inference import servable_bases

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Authorized], responses=OPENAI_ERROR_RESPONSES)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    available: bool = True
    licence: str | None = None
    base_model: str | None = None  # for adapters: the base they attach to


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models/{model_id:path}", summary="One model or adapter by id (OpenAI's models.retrieve)")
def retrieve_model(model_id: str, engine: EngineDep, settings: SettingsDep) -> ModelCard:
    for card in list_models(engine, settings).data:
        if card.id == model_id:
            return card
    raise NotFound(f"model {model_id!r} does not exist: GET /v1/models lists the base models and adapters")


@router.get("/models", summary="Base models and adapters a request may name (OpenAI's models.list)")
def list_models(engine: EngineDep, settings: SettingsDep) -> ModelList:
    cards = []
    for name in servable_bases(engine=engine, default_base=settings.default_base_model):
        bundled = BUNDLED.get(name)
        cards.append(ModelCard(id=name, owned_by="tunebridge-bundled" if bundled else "local",
                               licence=bundled.licence if bundled else None,
                               available=importlib.util.find_spec(bundled.package) is not None if bundled else True))
    for entry in adapters.list_adapters(engine=engine):
        newest = entry["versions"][0]
        refs = [entry["name"], *(f"{entry['name']}@{a}" for a in entry["aliases"]),
                *(v["id"] for v in entry["versions"])]
        cards += [ModelCard(id=ref, owned_by="tunebridge-adapter", base_model=newest["base_model"]) for ref in refs]
    return ModelList(data=cards)
