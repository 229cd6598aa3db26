"""Options of an eval job (`POST /v1/jobs` with kind=eval), validated when the job is created."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidRequest
from backend.evaluation.policy import PromotionPolicy
from backend.training.config import from_known


@dataclass
class EvalConfig:
    adapters: list[str] = field(default_factory=list)  # registry references: name, name@3, name@prod
    include_base: bool = True  # evaluate the base model too, as the baseline
    model: str | None = None  # base model (default: the first adapter's base)
    limit: int = 0  # first N examples only (0: all)
    batch_size: int = 8
    max_new_tokens: int = 0  # 0: 48 per field + 32
    promote: dict[str, Any] | None = None  # {"alias": "prod", "min_gain": 0.0, "max_field_drop": 0.05}

    def __post_init__(self) -> None:
        if not isinstance(self.adapters, list) or not all(isinstance(a, str) and a for a in self.adapters):
            raise InvalidRequest(f"adapters: got {self.adapters!r}, expected a list of adapter references")
        if not self.adapters and not self.include_base:
            raise InvalidRequest("nothing to evaluate: give adapters, or include the base model")
        for name, value, low in (
            ("limit", self.limit, 0),
            ("batch_size", self.batch_size, 1),
            ("max_new_tokens", self.max_new_tokens, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise InvalidRequest(f"{name}: got {value!r}, expected an integer >= {low}")
        if self.promote is not None:
            if len(self.adapters) != 1:
                raise InvalidRequest(f"promote: needs exactly one adapter to decide on, got {len(self.adapters)}")
            _ = self.policy  # validates

    @property
    def policy(self) -> PromotionPolicy | None:
        if self.promote is None:
            return None
        if not isinstance(self.promote, dict):
            raise InvalidRequest(f'promote: got {self.promote!r}, expected an object like {{"alias": "prod"}}')
        return PromotionPolicy.from_dict(self.promote)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalConfig:
        return from_known(cls, values, what="eval")
