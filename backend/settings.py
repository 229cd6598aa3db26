"""Service settings from `TUNEBRIDGE_*` environment variables (and `DATABASE_URL`).

`get_settings()` is cached and is the one dependency routes use; tests override it instead of
touching the environment of a running process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEBRIDGE_", extra="ignore")

    data_dir: Path = Field(Path("tunebridge-data"), description="Holds the database, datasets, jobs and adapters.")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("TUNEBRIDGE_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL (postgresql+psycopg://...); default: SQLite in data_dir.",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP server listens on.")
    workers: int = Field(1, ge=0, description="Job worker processes that `tunebridge serve` starts.")
    lease_s: float = Field(30.0, gt=0, description="A job whose worker sends no heartbeat for this long is taken over.")
    default_base_model: str = Field("smollm2-135m", description="Base model for token statistics and new jobs.")
    allowed_model_dirs: str = Field(
        "",
        description="Folders (colon- or comma-separated) whose model folders a "
        "job may name as its base model, besides the bundled models and "
        "default_base_model; no other server path is accepted.",
    )
    max_body_mb: float = Field(50.0, gt=0, description="Largest request body accepted, in MiB.")
    max_adapter_mb: float = Field(
        1024.0,
        gt=0,
        description="Largest adapter archive POST /v1/adapters accepts, in MiB: the upload, and what it unpacks to.",
    )
    max_dataset_mb: float = Field(2048.0, gt=0, description="Largest a dataset may grow to, in MiB.")
    webhook_secret: str | None = Field(
        None,
        description="Shared secret of the labelled-data webhook (HMAC-SHA256); "
        "the webhook refuses every delivery while it is unset.",
    )
    callback_secret: str | None = Field(None, description="Signs job-end callbacks; default: webhook_secret.")
    train_threshold: int = Field(
        100,
        ge=1,
        description="New labelled examples (since the dataset's last training) "
        "that make the webhook start a training job.",
    )
    max_new_tokens: int = Field(2048, ge=1, description="Upper bound on generated tokens per request.")
    review_confidence: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Extracted fields below this confidence, or not found in the document, are flagged for review.",
    )
    policy_file: str | None = Field(
        None, description="Decision policy YAML for /v1/documents (default: agents/policies/default.yaml)."
    )
    corrections_dataset: str = Field(
        "corrections", description="Review corrections from /v1/documents become examples of `<this>-<document type>`."
    )
    max_prompt_tokens: int = Field(4096, ge=1, description="Longest prompt accepted, in tokens.")
    max_schema_properties: int = Field(
        200,
        ge=1,
        description="Most properties (all levels together) a schema for extraction or response_format may have.",
    )
    max_schema_depth: int = Field(8, ge=1, description="Deepest nesting of objects and arrays such a schema may have.")
    request_timeout_s: float = Field(
        600.0,
        ge=0,
        description="An inference request not answered within this many "
        "seconds gets a 503; one still queued is dropped, never run (0: no limit).",
    )
    batch_max: int = Field(8, ge=1, description="Requests generated together in one batch (1 = no batching).")
    batch_window_ms: float = Field(10.0, ge=0, description="How long the batcher waits for more requests.")
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="Where the service runs inference.")
    inference_dtype: str = Field(
        "auto",
        pattern="^(auto|float32|bfloat16|int8)$",
        description="Weights for inference (auto: bf16 on CUDA and on CPUs with bf16 units, else fp32; "
        "int8: the base model's linear layers in dynamic int8 on x86 CPUs, faster there and less exact).",
    )
    inference_threads: int = Field(
        0,
        ge=0,
        description="CPU threads for inference in the API process (0: an even "
        "share of the cores with the workers started alongside).",
    )
    worker_threads: int = Field(
        0,
        ge=0,
        description="CPU threads per worker for training (0: the cores left, "
        "split evenly; all cores for a `tunebridge worker` alone).",
    )
    vllm_url: str | None = Field(
        None,
        description="A running vLLM server (http://host:8000, started with "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True): a version an eval gate promotes is "
        "loaded into it as name@version (docs/vllm.md).",
    )
    vllm_api_key: str | None = Field(None, description="The --api-key the vLLM server was started with, if any.")
    vllm_path_map: str | None = Field(
        None,
        description="LOCAL=REMOTE[,LOCAL=REMOTE]: where vLLM sees folders of "
        "this data dir (vLLM on another host or in a container).",
    )
    vllm_unload_previous: bool = Field(
        False, description="After a push, unload the name's other versions from vLLM (those no alias points at)."
    )
    vllm_move_alias: bool = Field(
        False,
        description="After a push, also serve the promoted version under the "
        "alias name in vLLM (name@prod), replacing the previous one.",
    )

    def thread_split(self, *, cores: int, workers: int) -> tuple[int, int]:
        """(inference threads, threads per worker) when `workers` workers share `cores` with the API.
        Oversubscribed torch thread pools spin against each other: measured here, decoding ran 13x
        slower with 2 inference threads beside a training worker on 2 cores than with 1."""
        if workers == 0:
            return self.inference_threads or cores, self.worker_threads or cores
        inference = self.inference_threads or max(1, cores // (workers + 1))
        return inference, self.worker_threads or max(1, (cores - inference) // workers)

    @property
    def signing_secret(self) -> str | None:
        return self.callback_secret or self.webhook_secret

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tunebridge.db').resolve()}"


def from_options(**options: Any) -> Settings:
    """The environment's settings with the command line's options over them (those given: not None)."""
    return Settings(**{k: v for k, v in options.items() if v is not None})


@lru_cache
def get_settings() -> Settings:
    return Settings()
