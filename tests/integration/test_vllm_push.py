"""`tunebridge vllm push` and the push after an eval-gated promotion, against a fake vLLM server.

The fake is a real HTTP server on a loopback port (FastAPI under uvicorn, as vLLM's own server is)
with vLLM's routes and answers, as in vLLM's source (vllm/entrypoints/openai/models/serving.py,
vllm/entrypoints/serve/lora/api_router.py, vllm/entrypoints/openai/api_server.py):
- `GET /v1/models`: the base (`root`: the folder served, `parent: null`) and each adapter (`root`: its
  lora_path, `parent`: the base);
- `POST /v1/load_lora_adapter` / `/v1/unload_lora_adapter` only when runtime updating is allowed
  (VLLM_ALLOW_RUNTIME_LORA_UPDATING), else the routes do not exist: 404 `{"detail": "Not Found"}`;
- load reads the folder the way vLLM's loader does: no adapter_config.json → 404 "No adapter found
  for ...", no adapter_model.safetensors/.bin → 400 "... doesn't contain tensors", a rank above
  --max-lora-rank → 400; without --enable-lora → 400 "LoRA is not enabled"; a name loaded twice → 400
  (unless `load_inplace`, vLLM >= 0.11); success → 200, plain text "Success: ...";
- errors as `{"error": {...}}` (current) or `{"object": "error", ...}` (before 0.10);
- `--api-key`: every /v1 route answers 401 `{"error": "Unauthorized"}` without the key;
- a container: only folders under its mounts exist for it.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from backend.errors import InvalidRequest
from servers import free_port, wait_for

DOCS = [
    {
        "text": "ACME Tools Ltd\nInvoice 2024-117\nTotal due: 1,250.00",
        "fields": {"company": "ACME Tools Ltd", "total": "1,250.00"},
    },
    {"text": "Kedai Runcit Maju\nTOTAL RM 9.00", "fields": {"company": "Kedai Runcit Maju", "total": "9.00"}},
]


class _Load(BaseModel):
    lora_name: str
    lora_path: str
    load_inplace: bool = False


class _Unload(BaseModel):
    lora_name: str
    lora_int_id: int | None = None


class FakeVLLM:
    def __init__(
        self,
        *,
        base: str,
        base_path: str | None = None,
        mounts: dict[str, Path] | None = None,
        runtime_updating: bool = True,
        enable_lora: bool = True,
        max_lora_rank: int = 16,
        api_key: str | None = None,
        inplace: bool = True,
        old_errors: bool = False,
    ):
        self.base, self.base_path, self.mounts = base, base_path or base, mounts
        self.runtime_updating, self.enable_lora, self.max_lora_rank = runtime_updating, enable_lora, max_lora_rank
        self.api_key, self.inplace, self.old_errors = api_key, inplace, old_errors
        self.loras: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self._ids = 0

    def error(self, message: str, kind: str, code: int) -> JSONResponse:
        if self.old_errors:
            body = {"object": "error", "message": message, "type": kind, "param": None, "code": code}
        else:
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status_code=code)

    def visible(self, path: str) -> Path | None:
        """The folder as this server sees it: inside a container only its mounts exist."""
        if self.mounts is None:
            return Path(path)
        for remote, local in self.mounts.items():
            if path == remote or path.startswith(remote.rstrip("/") + "/"):
                return Path(local, path[len(remote) :].lstrip("/"))
        return None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def authenticate(request: Request, call_next):
            if (
                self.api_key
                and request.url.path.startswith("/v1")
                and request.headers.get("authorization") != f"Bearer {self.api_key}"
            ):
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            return await call_next(request)

        @app.exception_handler(RequestValidationError)
        async def invalid(_: Request, exc: RequestValidationError):
            return self.error(str(exc), "Bad Request", 400)

        @app.get("/v1/models")
        def models():
            cards = [
                {
                    "id": self.base,
                    "object": "model",
                    "created": 0,
                    "owned_by": "vllm",
                    "root": self.base_path,
                    "parent": None,
                    "max_model_len": 2048,
                    "permission": [{}],
                }
            ]
            cards += [
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "vllm",
                    "root": lora["path"],
                    "parent": self.base,
                    "max_model_len": None,
                    "permission": [{}],
                }
                for name, lora in self.loras.items()
            ]
            return {"object": "list", "data": cards}

        if not self.runtime_updating:
            return app

        @app.post("/v1/load_lora_adapter")
        def load(body: _Load):
            self.calls.append(("load", body.model_dump()))
            name, path = body.lora_name, body.lora_path
            if not name or not path:
                return self.error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
            if name in self.loras and not (self.inplace and body.load_inplace):
                return self.error(
                    f"The lora adapter '{name}' has already been loaded. If you want to load the "
                    "adapter in place, set 'load_inplace' to True.",
                    "InvalidUserInput",
                    400,
                )
            if not self.enable_lora:
                return self.error("LoRA is not enabled. Use --enable-lora to enable LoRA.", "BadRequestError", 400)
            folder = self.visible(path)
            if folder is None or not (folder / "adapter_config.json").is_file():
                return self.error(f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError", 404)
            config = json.loads((folder / "adapter_config.json").read_text())
            if (folder / "adapter_model.safetensors").is_file():
                from safetensors import safe_open

                with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
                    if not any(".lora_A." in k for k in f.keys()):  # noqa: SIM118 - safe_open has keys(), no __iter__
                        return self.error(f"{path} has no LoRA weights", "BadRequestError", 400)
            elif not (folder / "adapter_model.bin").is_file():
                return self.error(f"{path} doesn't contain tensors", "BadRequestError", 400)
            if int(config["r"]) > self.max_lora_rank:
                return self.error(
                    f"LoRA rank {config['r']} is greater than max_lora_rank {self.max_lora_rank}.",
                    "BadRequestError",
                    400,
                )
            self._ids += 1
            self.loras[name] = {"path": path, "int_id": self.loras.get(name, {}).get("int_id", self._ids)}
            return Response(status_code=200, content=f"Success: LoRA adapter '{name}' added successfully.")

        @app.post("/v1/unload_lora_adapter")
        def unload(body: _Unload):
            self.calls.append(("unload", body.model_dump()))
            if body.lora_name not in self.loras:
                return self.error(f"The lora adapter '{body.lora_name}' cannot be found.", "NotFoundError", 404)
            del self.loras[body.lora_name]
            return Response(status_code=200, content=f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

        return app


@contextmanager
def serving(fake: FakeVLLM):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30, every=0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def trained_run(tiny_model, tmp_path_factory):
    """One tiny training run; each test registers it as versions of its own registry."""
    from backend.training.config import TrainConfig
    from backend.training.trainer import train

    out = tmp_path_factory.mktemp("vllm-push-run")
    data = out / "d.jsonl"
    data.write_text(json.dumps({"prompt": "2+2?", "completion": "4"}) + "\n")
    run = train(
        TrainConfig(
            model=tiny_model,
            data=[str(data)],
            output_dir=str(out / "runs"),
            report_to="none",
            save_every=0,
            val_fraction=0.0,
            batch_size=1,
            precision="fp32",
            threads=1,
            max_steps=2,
        ),
        progress_bar=False,
    )
    (run.run_dir / "data.jsonl").write_text(data.read_text())
    return run


@pytest.fixture
def registry(trained_run, tmp_path):
    """A data dir with versions rx@1..rx@3 of the same run (only the first 3 tests need them all)."""
    from backend.services import adapters
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    engine = make_engine(f"sqlite:///{data_dir / 'tunebridge.db'}")
    migrate(engine)
    for job in ("j1", "j2", "j3"):
        adapters.register(
            engine=engine,
            data_dir=data_dir,
            name="rx",
            job_id=job,
            dataset="d",
            run_dir=trained_run.run_dir,
            summary=trained_run.summary,
        )
    yield {"data_dir": data_dir, "engine": engine, "base": trained_run.summary["base_model"]}
    engine.dispose()


def push(capsys, registry, *args: str) -> tuple[int, str, str]:
    from backend.cli import main

    code = main(["vllm", "push", *args, "--data-dir", str(registry["data_dir"])])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_push_loads_the_aliased_version_under_its_versioned_name_with_the_mapped_path(registry, capsys):
    from backend.services import adapters

    data_dir = registry["data_dir"]
    adapters.set_alias(engine=registry["engine"], name="rx", alias="prod", version=2)
    fake = FakeVLLM(base=registry["base"], mounts={"/models/tunebridge": data_dir})  # vLLM in a container
    with serving(fake) as url:
        code, out, err = push(
            capsys, registry, "rx@prod", "--url", f"{url}/v1", "--path-map", f"{data_dir}=/models/tunebridge"
        )
        assert code == 0, err
        remote = "/models/tunebridge/adapters/rx/v2/adapter"
        assert fake.calls == [("load", {"lora_name": "rx@2", "lora_path": remote, "load_inplace": False})]
        assert f"loaded: rx@2 (rx@2, base {registry['base']}) from {remote} at {url}" in out
        cards = {c["id"]: c for c in httpx.get(f"{url}/v1/models").json()["data"]}
        assert cards["rx@2"]["root"] == remote and cards["rx@2"]["parent"] == registry["base"]

        code, out, _ = push(capsys, registry, "rx@2", "--url", url, "--path-map", f"{data_dir}=/models/tunebridge")
        assert code == 0 and out.startswith("already loaded: rx@2") and len(fake.calls) == 1  # versions never change


def test_push_unload_previous_keeps_versions_an_alias_still_holds(registry, capsys, monkeypatch):
    from backend.services import adapters

    engine = registry["engine"]
    adapters.set_alias(engine=engine, name="rx", alias="staging", version=1)
    fake = FakeVLLM(base=registry["base"])
    with serving(fake) as url:
        monkeypatch.setenv("TUNEBRIDGE_VLLM_URL", url)  # the URL from the service's settings
        for ref in ("rx@1", "rx@2"):
            assert push(capsys, registry, ref)[0] == 0
        adapters.set_alias(engine=engine, name="rx", alias="prod", version=3)
        code, out, err = push(capsys, registry, "rx@prod", "--unload-previous")
        assert code == 0, err
        assert set(fake.loras) == {"rx@1", "rx@3"} and "unloaded: rx@2" in out  # rx@1 is still rx@staging
        assert fake.loras["rx@3"]["path"] == str(registry["data_dir"].resolve() / "adapters/rx/v3/adapter")


@pytest.mark.parametrize("inplace", [True, False], ids=["load_inplace", "older-vllm"])
def test_push_with_alias_moves_the_alias_name_to_the_new_version(registry, capsys, inplace):
    fake = FakeVLLM(base=registry["base"], inplace=inplace, old_errors=not inplace)
    folder = registry["data_dir"].resolve() / "adapters" / "rx"
    with serving(fake) as url:
        code, out, err = push(capsys, registry, "rx@1", "--url", url, "--alias", "prod")
        assert code == 0 and "alias rx@prod: loaded" in out, err
        code, out, err = push(capsys, registry, "rx@2", "--url", url, "--alias", "prod")
        assert code == 0, err
        assert f"alias rx@prod: {'reloaded in place' if inplace else 'unloaded and loaded'}" in out
        assert fake.loras["rx@prod"]["path"] == str(folder / "v2" / "adapter") and set(fake.loras) == {
            "rx@1",
            "rx@2",
            "rx@prod",
        }
        code, out, _ = push(capsys, registry, "rx@2", "--url", url, "--alias", "prod")
        assert code == 0 and "alias rx@prod: unchanged" in out


def _strip_tensors(registry, tmp_path) -> Path:
    copy = tmp_path / "no-tensors" / "adapters" / "rx" / "v1" / "adapter"
    copy.mkdir(parents=True)
    (copy / "adapter_config.json").write_text(
        (registry["data_dir"] / "adapters/rx/v1/adapter/adapter_config.json").read_text()
    )
    return tmp_path / "no-tensors"


@pytest.mark.parametrize(
    "case",
    ["unreachable", "runtime-off", "lora-off", "container-no-map", "no-tensors", "rank", "base", "api-key", "unknown"],
)
def test_push_errors_say_what_is_wrong(registry, capsys, tmp_path, case):
    data_dir = registry["data_dir"]
    fake = FakeVLLM(base=registry["base"], old_errors=case in ("lora-off", "rank"))
    args = ["rx@1"]
    expected: tuple[str, ...]
    if case == "runtime-off":
        fake.runtime_updating = False
        expected = (
            "does not allow loading adapters at runtime",
            "404 Not Found",
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True",
        )
    elif case == "lora-off":
        fake.enable_lora = False
        expected = ("LoRA is not enabled. Use --enable-lora to enable LoRA.", "VLLM_ALLOW_RUNTIME_LORA_UPDATING")
    elif case == "container-no-map":
        fake.mounts = {"/models/tunebridge": data_dir}
        expected = ("No adapter found for", str(data_dir.resolve()), "--path-map LOCAL=REMOTE")
    elif case == "no-tensors":
        fake.mounts = {"/models/tunebridge": _strip_tensors(registry, tmp_path)}
        args += ["--path-map", f"{data_dir}=/models/tunebridge"]
        expected = ("/models/tunebridge/adapters/rx/v1/adapter doesn't contain tensors",)
    elif case == "rank":
        fake.max_lora_rank = 8
        expected = ("LoRA rank 16 is greater than max_lora_rank 8.", "larger --max-lora-rank")
    elif case == "base":
        fake.base, fake.base_path = "Qwen/Qwen2.5-0.5B-Instruct", "/models/qwen"
        expected = (
            "serves Qwen/Qwen2.5-0.5B-Instruct (/models/qwen)",
            f"was trained on {registry['base']!r}",
            "--no-base-check",
        )
    elif case == "api-key":
        fake.api_key = "sk-right"
        args += ["--api-key", "sk-wrong"]
        expected = ("refused the API key",)
    elif case == "unknown":
        args = ["rx@nope"]
        expected = ("adapter 'rx@nope' does not exist (no alias 'nope')",)
    else:
        expected = ("is unreachable", "ConnectError")
    with serving(fake) as url:
        target = f"http://127.0.0.1:{free_port()}" if case == "unreachable" else url
        code, out, err = push(capsys, registry, *args, "--url", target)
    # a wrong reference is the caller's mistake (2); what vLLM answers, or not, is the server's (3)
    assert code == (2 if case == "unknown" else 3) and not out and err.startswith("error: "), (out, err)
    for text in expected:
        assert text in err
    assert not fake.loras
    if case == "base":  # the same push, told to skip the check, goes through
        with serving(fake) as url:
            assert push(capsys, registry, "rx@1", "--url", url, "--no-base-check")[0] == 0
        assert set(fake.loras) == {"rx@1"}


def test_path_map_takes_the_most_specific_folder_and_refuses_a_bad_spec(tmp_path):
    from backend.services.vllm_push import map_path, parse_path_map

    pairs = parse_path_map(f"{tmp_path}=/data, {tmp_path / 'adapters'}=/adapters")
    assert map_path(tmp_path / "adapters" / "rx" / "v1", pairs) == "/adapters/rx/v1"
    assert map_path(tmp_path / "jobs", pairs) == "/data/jobs"
    assert map_path(Path("/elsewhere/x"), pairs) == "/elsewhere/x"
    with pytest.raises(InvalidRequest, match="expected LOCAL=REMOTE"):
        parse_path_map(["/only-local"])


def test_a_promotion_pushes_the_new_version_and_a_failed_push_keeps_the_promotion(registry, tiny_model):
    """The worker runs the eval gate in-process; with TUNEBRIDGE_VLLM_URL set the promoted version is
    loaded into vLLM, and when vLLM is gone the alias still moves, the error is on the job."""
    from backend.services import adapters, datasets, jobs
    from backend.settings import Settings
    from backend.worker import run_job

    engine, data_dir = registry["engine"], registry["data_dir"]
    adapters.set_alias(engine=engine, name="rx", alias="prod", version=1)
    datasets.append_examples(
        engine=engine,
        data_dir=data_dir,
        name="rx-eval",
        source="test",
        body="\n".join(json.dumps(d) for d in DOCS).encode(),
    )

    def gate(candidate: str, vllm_url: str) -> dict:
        jobs.create_job(
            engine=engine,
            kind="eval",
            dataset="rx-eval",
            params={"adapters": [candidate], "include_base": False, "max_new_tokens": 8, "promote": {"alias": "prod"}},
        )
        job = jobs.claim_next(engine=engine, owner="test", lease_s=60)
        settings = Settings(
            data_dir=data_dir,
            default_base_model=tiny_model,
            worker_threads=1,
            vllm_url=vllm_url,
            vllm_unload_previous=True,
            vllm_move_alias=True,
        )
        assert (
            run_job(job, engine=engine, settings=settings, owner="test", lease_s=60, shutdown=threading.Event())
            == "succeeded"
        )
        return jobs.get_job(engine=engine, job_id=job["id"])["result"]

    fake = FakeVLLM(base=registry["base"])
    with serving(fake) as url:
        httpx.post(
            f"{url}/v1/load_lora_adapter",
            json={"lora_name": "rx@1", "lora_path": str(data_dir.resolve() / "adapters/rx/v1/adapter")},
        ).raise_for_status()  # what served @prod until now
        result = gate("rx@2", url)
    assert result["promotion"]["promote"] and result["promotion"]["incumbent"] == "rx@1"
    assert result["vllm"] == {
        "url": url,
        "pushed": "rx@2",
        "lora_path": str(data_dir.resolve() / "adapters/rx/v2/adapter"),
        "already_loaded": False,
        "unloaded": ["rx@1"],
        "alias": {"name": "rx@prod", "action": "loaded"},
        "error": None,
    }
    assert set(fake.loras) == {"rx@2", "rx@prod"}

    dead = f"http://127.0.0.1:{free_port()}"
    result = gate("rx@3", dead)
    assert result["promotion"]["promote"] and adapters.resolve(engine=engine, ref="rx@prod")["version"] == 3
    assert result["vllm"]["pushed"] is None and result["vllm"]["url"] == dead
    assert "unreachable" in result["vllm"]["error"] and result["vllm"]["error"].startswith("VLLMError: ")
