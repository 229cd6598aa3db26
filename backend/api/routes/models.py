"""`GET /v1/models`, in the OpenAI list format: the base models this service can serve.
(Trained adapters join this list with the adapter registry.)"""

from __future__ import annotations

import importlib.util
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.deps import Authorized
from backend.models.bundled import BUNDLED

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Authorized])


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    available: bool
    licence: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models")
def list_models() -> ModelList:
    cards = [ModelCard(id=name, owned_by="tunebridge-bundled", licence=m.licence,
                       available=importlib.util.find_spec(m.package) is not None) for name, m in BUNDLED.items()]
    return ModelList(data=cards)
