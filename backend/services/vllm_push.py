"""Loading a registry version into a running vLLM server, through its runtime LoRA API.

vLLM (started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`) adds two routes to its
OpenAI-compatible server: `POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and
`POST /v1/unload_lora_adapter {"lora_name"}`; both answer 200 with a plain-text "Success: ..." line,
or an OpenAI-style error (`{"error": {"message", "type", "code"}}`; `{"object": "error", "message", ...}`
before vLLM 0.10). Without the variable the routes do not exist (404 `{"detail": "Not Found"}`).
`GET /v1/models` lists the base model(s) (`parent: null`, `root`: the folder served) and every
adapter (`root`: its `lora_path`, `parent`: the base).

`push_adapter` resolves a reference (`name`, `name@3`, `name@prod`) to its version and loads it as
`name@<version>` — vLLM's adapter names are free strings (a dict key matched against a request's
`model`), so the registry's ids are used unchanged, as `tunebridge vllm` does with `--lora-modules`.
Versions are immutable, so a name loaded once never needs reloading; with `move_alias` the alias
name (`name@prod`) is pointed at the new folder as well, so clients that ask for the alias follow
the promotion.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from sqlalchemy import Engine

from backend.errors import InvalidRequest, Upstream
from backend.services import adapters

log = logging.getLogger("tunebridge.vllm")
VERSIONED = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)@(?P<version>\d+)$")
ENABLE_HINT = (
    "start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment and --enable-lora (docs/vllm.md)"
)


class VLLMError(Upstream):
    """vLLM unreachable, or it refused a request: the message says which and what to change."""


def parse_path_map(spec: str | list[str] | None) -> list[tuple[Path, str]]:
    """`LOCAL=REMOTE` pairs (a list, or one string separated by commas): a folder here and the same
    folder as vLLM sees it (another host, a container with the data dir mounted elsewhere)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    pairs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        local, sep, remote = item.partition("=")
        if not sep or not local.strip() or not remote.strip():
            raise InvalidRequest(f"path map {item!r}: expected LOCAL=REMOTE, e.g. /srv/tunebridge-data=/data")
        pairs.append((Path(local.strip()).expanduser().resolve(), remote.strip().rstrip("/") or "/"))
    return sorted(pairs, key=lambda p: len(p[0].parts), reverse=True)  # the most specific folder first


def map_path(path: Path, path_map: list[tuple[Path, str]]) -> str:
    """The folder as vLLM sees it: the longest LOCAL prefix replaced by its REMOTE; unchanged without one."""
    path = path.resolve()
    for local, remote in path_map:
        if path.is_relative_to(local):
            return str(PurePosixPath(remote, *path.relative_to(local).parts))
    return str(path)


def base_url(url: str) -> str:
    """The server's root whether given as `http://host:8000` or as an OpenAI base URL ending in `/v1`."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(f"vLLM URL {url!r}: expected http://host:port")
    return url.removesuffix("/v1")


class VLLMClient:
    """The few routes tunebridge uses, with vLLM's answers turned into clear errors."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 120.0):
        self.url = base_url(url)
        self.http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        )

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise VLLMError(
                f"vLLM at {self.url} is unreachable ({type(exc).__name__}: {exc}); is it running, and is the URL right?"
            ) from exc
        if response.status_code == 401:
            raise VLLMError(
                f"vLLM at {self.url} refused the API key ({method} {path}: 401); give the key vLLM was "
                "started with (--api-key, or TUNEBRIDGE_VLLM_API_KEY)"
            )
        return response

    def models(self) -> list[dict[str, Any]]:
        response = self._send("GET", "/v1/models")
        if response.status_code != 200:
            raise VLLMError(
                f"vLLM at {self.url}: GET /v1/models answered {response.status_code}: {error_message(response)}"
            )
        try:
            return list(response.json()["data"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VLLMError(
                f"{self.url}/v1/models did not answer a model list ({response.text[:200]!r}): is this a vLLM server?"
            ) from exc

    def load(self, name: str, path: str, *, inplace: bool = False) -> httpx.Response:
        body: dict[str, Any] = {"lora_name": name, "lora_path": path}
        if inplace:
            body["load_inplace"] = True  # vLLM >= 0.11 replaces the weights under the same name
        return self._check_route(self._send("POST", "/v1/load_lora_adapter", body), "load_lora_adapter")

    def unload(self, name: str) -> httpx.Response:
        return self._check_route(
            self._send("POST", "/v1/unload_lora_adapter", {"lora_name": name}), "unload_lora_adapter"
        )

    def _check_route(self, response: httpx.Response, route: str) -> httpx.Response:
        if response.status_code in (404, 405) and not _is_vllm_error(response):  # the route itself is missing
            raise VLLMError(
                f"vLLM at {self.url} does not allow loading adapters at runtime (POST /v1/{route}: "
                f"{response.status_code} {error_message(response)}); {ENABLE_HINT}"
            )
        return response


def error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return response.text.strip()[:500]


def _is_vllm_error(response: httpx.Response) -> bool:
    """vLLM's own error body (both shapes), as opposed to the framework's 404 for an unknown route."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (isinstance(body.get("error"), dict) or body.get("object") == "error")


def _base_matches(card: dict[str, Any], base_model: str) -> bool:
    root = str(card.get("root") or "")
    return base_model in (card.get("id"), root) or (
        bool(root) and PurePosixPath(root).name == PurePosixPath(base_model.rstrip("/")).name
    )


def push_adapter(
    url: str,
    ref: str,
    *,
    engine: Engine,
    api_key: str | None = None,
    name: str | None = None,
    path_map: str | list[str] | None = None,
    unload_previous: bool = False,
    move_alias: str | None = None,
    check_base: bool = True,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Load the version `ref` resolves to into the vLLM server at `url` as `name@<version>` (or `name`).

    `path_map`: LOCAL=REMOTE folder pairs, when vLLM sees the data dir under another path.
    `unload_previous`: unload the other `name@<number>` versions loaded there, except those an alias
    of the registry points at now. `move_alias`: also serve this version as `name@<alias>` there.
    Raises VLLMError (unreachable, refused, wrong base model) or adapters.AdapterNotFoundError."""
    record = adapters.resolve(engine=engine, ref=ref)
    served = name or record["id"]
    folder = Path(record["path"]) / "adapter"
    if not (folder / "adapter_config.json").is_file():
        raise VLLMError(
            f"{record['id']}: its adapter folder {folder} is missing here (registry and files out of step?)"
        )
    remote = map_path(folder, parse_path_map(path_map))
    client = VLLMClient(url, api_key=api_key, timeout_s=timeout_s)
    try:
        cards = client.models()
        bases = [c for c in cards if not c.get("parent")]
        if check_base and not any(_base_matches(c, record["base_model"]) for c in bases):
            served_bases = ", ".join(f"{c.get('id')} ({c.get('root')})" for c in bases) or "nothing"
            raise VLLMError(
                f"vLLM at {client.url} serves {served_bases}, but {record['id']} was trained on "
                f"{record['base_model']!r}: start vLLM on that base (`tunebridge vllm` prints the "
                "command, with --served-model-name), or skip this check (--no-base-check)"
            )
        loaded = {c.get("id"): c for c in cards if c.get("parent")}
        out: dict[str, Any] = {
            "url": client.url,
            "ref": ref,
            "adapter": record["id"],
            "served_name": served,
            "lora_path": remote,
            "base_model": record["base_model"],
            "already_loaded": False,
            "unloaded": [],
            "alias": None,
        }
        if served in loaded:
            if str(loaded[served].get("root")) != remote:
                raise VLLMError(
                    f"vLLM at {client.url} already serves {served!r} from {loaded[served].get('root')}, "
                    f"not {remote}; unload it first (POST /v1/unload_lora_adapter)"
                )
            out["already_loaded"] = True
        else:
            _load(client, served, remote, record["id"])
            cards = client.models()
            if not any(c.get("id") == served and str(c.get("root")) == remote for c in cards):
                raise VLLMError(f"vLLM at {client.url} accepted {served!r} but does not list it in GET /v1/models")
        if move_alias:
            out["alias"] = _move_alias(
                client,
                f"{record['name']}@{adapters.check_alias(move_alias)}",
                remote,
                {c.get("id"): c for c in cards if c.get("parent")},
                record["id"],
            )
        if unload_previous:
            out["unloaded"] = _unload_previous(client, engine, record, served, cards)
        log.info("vLLM %s: %s serves %s from %s", client.url, served, record["id"], remote)
        return out
    finally:
        client.close()


def _load(client: VLLMClient, served: str, remote: str, adapter_id: str, *, inplace: bool = False) -> None:
    response = client.load(served, remote, inplace=inplace)
    if response.status_code == 200:
        return
    message = error_message(response)
    hint = ""
    if "No adapter found" in message or response.status_code == 404:
        hint = (
            "; vLLM cannot read that folder: if it runs on another host or in a container, map the data dir "
            "with --path-map LOCAL=REMOTE (TUNEBRIDGE_VLLM_PATH_MAP)"
        )
    elif "not enabled" in message.lower() and "lora" in message.lower():
        hint = f"; {ENABLE_HINT}"
    elif "max_lora_rank" in message:
        hint = "; restart vLLM with a larger --max-lora-rank (`tunebridge vllm` sizes it from the registry)"
    what = repr(served) if served == adapter_id else f"{adapter_id} as {served!r}"
    raise VLLMError(
        f"vLLM at {client.url} refused to load {what} from {remote} ({response.status_code}): {message}{hint}"
    )


def _move_alias(
    client: VLLMClient, alias_name: str, remote: str, loaded: dict[str | None, dict], adapter_id: str
) -> dict:
    current = loaded.get(alias_name)
    if current is not None and str(current.get("root")) == remote:
        return {"name": alias_name, "action": "unchanged"}
    if current is None:
        _load(client, alias_name, remote, adapter_id)
        return {"name": alias_name, "action": "loaded"}
    response = client.load(alias_name, remote, inplace=True)
    if response.status_code == 200:
        return {"name": alias_name, "action": "reloaded in place", "was": current.get("root")}
    if "already been loaded" not in error_message(response):  # not an older vLLM without load_inplace
        raise VLLMError(
            f"vLLM at {client.url} refused to reload {alias_name!r} from {remote} "
            f"({response.status_code}): {error_message(response)}"
        )
    unloaded = client.unload(alias_name)  # older vLLM: unload, then load (requests for it fail in between)
    if unloaded.status_code != 200 and unloaded.status_code != 404:
        raise VLLMError(f"vLLM at {client.url} refused to unload {alias_name!r}: {error_message(unloaded)}")
    _load(client, alias_name, remote, adapter_id)
    return {"name": alias_name, "action": "unloaded and loaded", "was": current.get("root")}


def _unload_previous(client: VLLMClient, engine: Engine, record: dict, served: str, cards: list[dict]) -> list[str]:
    """Unload the other `name@<number>` adapters of this name, keeping versions an alias points at."""
    entry = next((e for e in adapters.list_adapters(engine=engine) if e["name"] == record["name"]), None)
    kept = set((entry or {}).get("aliases", {}).values())
    gone = []
    for card in cards:
        match = VERSIONED.match(str(card.get("id"))) if card.get("parent") else None
        if not match or match["name"] != record["name"] or card["id"] == served or int(match["version"]) in kept:
            continue
        response = client.unload(card["id"])
        if response.status_code == 200:
            gone.append(card["id"])
        elif response.status_code != 404:  # 404: someone unloaded it meanwhile
            raise VLLMError(f"vLLM at {client.url} refused to unload {card['id']!r}: {error_message(response)}")
    return gone


def push_after_promotion(settings, *, engine: Engine, promotion: dict[str, Any]) -> dict[str, Any]:
    """The job-result record of pushing an eval-gated promotion to `settings.vllm_url`. Never raises:
    the promotion stands whatever vLLM says; a failure is logged and returned as `error`."""
    candidate = promotion["candidate"]
    alias = (promotion.get("policy") or {}).get("alias")
    try:
        done = push_adapter(
            settings.vllm_url,
            candidate,
            engine=engine,
            api_key=settings.vllm_api_key,
            path_map=settings.vllm_path_map,
            unload_previous=settings.vllm_unload_previous,
            move_alias=alias if settings.vllm_move_alias else None,
        )
    except Exception as exc:  # noqa: BLE001 - recorded on the job; the alias has moved regardless
        log.warning("promotion of %s: pushing it to vLLM at %s failed: %s", candidate, settings.vllm_url, exc)
        return {"url": settings.vllm_url, "pushed": None, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "url": done["url"],
        "pushed": done["served_name"],
        "lora_path": done["lora_path"],
        "already_loaded": done["already_loaded"],
        "unloaded": done["unloaded"],
        "alias": done["alias"],
        "error": None,
    }
