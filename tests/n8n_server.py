"""A real n8n for the workflow tests, in two lines: n8n 2.8.x on the system Node 20 and the newest
n8n 2.x on Node 24. The node package packed into a throwaway user folder, one `n8n start` on a free
loopback port, an owner and an API key, credentials and workflows through the public API, webhook
workflows activated.

n8n 2.8.4 comes from `scripts/install_n8n.sh` (default `~/.cache/tunebridge/n8n`, or
`TUNEBRIDGE_N8N_DIR`; `TUNEBRIDGE_N8N_BIN` names a binary directly), the newest from
`scripts/install_n8n_newest.sh` (default `~/.cache/tunebridge/n8n-newest`, or
`TUNEBRIDGE_N8N_NEWEST_DIR`; its Node 24 in `node24/bin` there). `find_n8n(line)` returns None and
the reason when a line is not installed, and the tests skip with it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from servers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
NODES = ROOT / "n8n_nodes"
WORKFLOWS = ROOT / "workflows"
N8N_VERSION = "2.8.4"  # the 2.8 line (the newest n8n that runs on Node 20)
N8N_NEWEST_KNOWN_GOOD = "2.41.1"  # the newest line's pinned fallback, and the compose image's n8n
PACKAGE = "n8n-nodes-tunebridge"
OWNER = {"email": "owner@tunebridge.test", "firstName": "Tune", "lastName": "Bridge", "password": "Tunebridge-test-1"}
API_SCOPES = [
    "workflow:create",
    "workflow:read",
    "workflow:update",
    "workflow:delete",
    "workflow:list",
    "workflow:activate",
    "workflow:deactivate",
    "credential:create",
    "credential:delete",
    "execution:read",
    "execution:list",
]


LINES = ("2.8", "newest")  # the n8n lines the workflows are tested on


@dataclass(frozen=True)
class N8nInstall:
    """An installed n8n: its binary, version and the environment it runs in (Node 24 first on PATH)."""

    line: str
    binary: Path
    version: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def webhook_url_var(self) -> str:
        """n8n >= 2.34 reads N8N_WEBHOOK_URL (WEBHOOK_URL is deprecated there); 2.8 only WEBHOOK_URL."""
        return "WEBHOOK_URL" if self.line == "2.8" else "N8N_WEBHOOK_URL"


def install_dir(line: str = "2.8") -> Path:
    cache = Path.home() / ".cache" / "tunebridge"
    if line == "newest":
        return Path(os.environ.get("TUNEBRIDGE_N8N_NEWEST_DIR", cache / "n8n-newest"))
    return Path(os.environ.get("TUNEBRIDGE_N8N_DIR", cache / "n8n"))


def installed_version(line: str) -> str | None:
    package = install_dir(line) / "node_modules" / "n8n" / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else None


def find_n8n(line: str = "2.8") -> tuple[N8nInstall | None, str]:
    """(the install, "") or (None, why not)."""
    explicit = os.environ.get("TUNEBRIDGE_N8N_BIN") if line == "2.8" else None
    if explicit:
        if not Path(explicit).exists():
            return None, f"TUNEBRIDGE_N8N_BIN={explicit} does not exist"
        return N8nInstall(line, Path(explicit), N8N_VERSION), ""
    folder = install_dir(line)
    script = "scripts/install_n8n.sh" if line == "2.8" else "scripts/install_n8n_newest.sh"
    binary, version = folder / "node_modules" / ".bin" / "n8n", installed_version(line)
    if line == "newest" and not (folder / ".complete").exists():  # the installer marks a finished install
        version = None
    if not binary.exists() or version is None:
        return None, f"n8n ({line}) is not installed in {folder}: run {script} {folder}"
    if line == "2.8" and version != N8N_VERSION:
        return None, f"n8n {version} in {folder}, expected {N8N_VERSION}: run {script} {folder}"
    env: dict[str, str] = {}
    node24 = folder / "node24" / "bin"
    if (node24 / "node").exists():
        env["PATH"] = f"{node24}{os.pathsep}{os.environ.get('PATH', '')}"
    node = shutil.which("node", path=env.get("PATH", os.environ.get("PATH")))
    if node is None:
        return None, "node is not on PATH"
    if line == "newest":
        major = subprocess.run(
            [node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        if not major.isdigit() or int(major) < 24:
            return None, f"n8n {version} needs Node >= 24, found {node} ({major or '?'}): run {script} {folder}"
    return N8nInstall(line, binary, version, env), ""


def _newest_mtime(*folders: Path) -> float:
    return max((p.stat().st_mtime for f in folders if f.exists() for p in f.rglob("*.ts")), default=0.0)


def pack_node_package(user_folder: Path) -> Path:
    """Build `n8n_nodes` if its dist is missing or stale, `npm pack` it and unpack it where n8n's own
    installer puts community packages: `<user folder>/.n8n/nodes/node_modules/n8n-nodes-tunebridge`."""
    # @n8n/node-cli needs Node 22+: the newest line's Node 24 when the installer put one there
    node24 = install_dir("newest") / "node24" / "bin"
    path = (
        f"{node24}{os.pathsep}{os.environ.get('PATH', '')}"
        if (node24 / "node").exists()
        else os.environ.get("PATH", "")
    )
    npm = {"cwd": NODES, "capture_output": True, "text": True, "timeout": 600, "env": {**os.environ, "PATH": path}}
    if not (NODES / "node_modules" / ".bin" / "n8n-node").exists():
        subprocess.run(["npm", "ci", "--yes", "--no-audit", "--no-fund"], check=True, **npm)
    built = NODES / "dist" / "nodes" / "Tunebridge" / "Tunebridge.node.js"
    if not built.exists() or built.stat().st_mtime < _newest_mtime(NODES / "nodes", NODES / "credentials"):
        subprocess.run(["npm", "run", "build"], check=True, **npm)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", "--json", "--pack-destination", tmp], check=True, **npm)
        tarball = Path(tmp) / json.loads(out.stdout)[0]["filename"]
        target = user_folder / ".n8n" / "nodes" / "node_modules" / PACKAGE
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                member.name = member.name.split("/", 1)[1] if "/" in member.name else ""
            tar.extractall(target, members=[m for m in tar.getmembers() if m.name], filter="data")
    version = json.loads((target / "package.json").read_text())["version"]
    (user_folder / ".n8n" / "nodes" / "package.json").write_text(
        json.dumps({"name": "installed-nodes", "private": True, "dependencies": {PACKAGE: version}}, indent=2)
    )
    return target


class N8n:
    """A started n8n: REST (owner cookie) and public API (API key) clients."""

    def __init__(
        self,
        url: str,
        user_folder: Path,
        log: Path,
        proc: subprocess.Popen,
        binary: Path | None = None,
        env: dict[str, str] | None = None,
        version: str = N8N_VERSION,
    ):
        self.url, self.user_folder, self.log, self.proc = url, user_folder, log, proc
        self.binary, self.env, self.version = binary, env or {}, version
        self.rest = httpx.Client(base_url=f"{url}/rest", timeout=30)
        self.api: httpx.Client | None = None

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def setup_owner(self) -> None:
        r = self.rest.post("/owner/setup", json=OWNER)
        assert r.status_code == 200, r.text
        r = self.rest.post("/login", json={"emailOrLdapLoginId": OWNER["email"], "password": OWNER["password"]})
        assert r.status_code == 200, r.text
        r = self.rest.post("/api-keys", json={"label": "tests", "scopes": API_SCOPES, "expiresAt": None})
        assert r.status_code == 200, r.text
        key = r.json()["data"]["rawApiKey"]
        self.api = httpx.Client(base_url=f"{self.url}/api/v1", headers={"X-N8N-API-KEY": key}, timeout=30)

    def create_credential(self, name: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        r = self.api.post("/credentials", json={"name": name, "type": type_, "data": data})
        assert r.status_code == 200, r.text
        return r.json()

    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """The public API takes name, nodes, connections, settings (an export's other keys are read-only)."""
        body = {k: workflow[k] for k in ("name", "nodes", "connections")}
        body["settings"] = {
            k: v
            for k, v in workflow.get("settings", {}).items()
            if k
            in (
                "executionOrder",
                "saveDataSuccessExecution",
                "saveDataErrorExecution",
                "saveManualExecutions",
                "saveExecutionProgress",
                "timezone",
            )
        }
        r = self.api.post("/workflows", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def activate(self, workflow_id: str) -> dict[str, Any]:
        r = self.api.post(f"/workflows/{workflow_id}/activate")
        assert r.status_code == 200, r.text
        return r.json()

    def executions(self, workflow_id: str, **params: Any) -> list[dict[str, Any]]:
        r = self.api.get("/executions", params={"workflowId": workflow_id, "limit": 50, **params})
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def execution(self, execution_id: str) -> dict[str, Any]:
        r = self.api.get(f"/executions/{execution_id}", params={"includeData": "true"})
        assert r.status_code == 200, r.text
        return r.json()

    def login_cookie(self) -> str:
        """A fresh owner session for the editor in a browser: the value of the `n8n-auth` cookie.
        Logged in without a `browser-id` header, the session is not bound to one browser."""
        with httpx.Client(base_url=f"{self.url}/rest", timeout=30) as rest:
            r = rest.post("/login", json={"emailOrLdapLoginId": OWNER["email"], "password": OWNER["password"]})
            assert r.status_code == 200, r.text
            return r.cookies["n8n-auth"]

    def credential_schema(self, type_: str) -> dict[str, Any] | None:
        """The JSON schema of a credential type's data (public API), or None when n8n does not know it."""
        r = self.api.get(f"/credentials/schema/{type_}")
        return r.json() if r.status_code == 200 else None

    def cli_execute(self, workflow_id: str, *, timeout: float = 300) -> dict[str, Any]:
        """`n8n execute --id <id> --rawOutput` beside the running server (same user folder and database, its
        own task-runner port): the run's data as JSON. Output goes to a file, never a pipe (the CLI spins on a
        closed stdout)."""
        out_path = self.user_folder.parent / f"execute-{workflow_id}-{time.time_ns()}.log"
        env = {**self.env, "N8N_RUNNERS_BROKER_PORT": str(free_port())}
        with open(out_path, "w") as out:
            proc = subprocess.run(
                [str(self.binary), "execute", "--id", workflow_id, "--rawOutput"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.user_folder.parent,
                timeout=timeout,
            )
        text = out_path.read_text(errors="replace")
        start = next((i for i, line in enumerate(text.splitlines()) if line.startswith("{")), None)
        assert proc.returncode == 0 and start is not None, f"n8n execute exited {proc.returncode}:\n{text[-4000:]}"
        return json.loads("\n".join(text.splitlines()[start:]))

    def cli_import(self, path: Path, *, timeout: float = 300) -> str:
        """`n8n import:workflow --input=<file>` beside the running server (its own task-runner port): the
        plain import of one export, as a user runs it. Returns the CLI's output; fails on a non-zero exit."""
        out_path = self.user_folder.parent / f"import-{path.stem}-{time.time_ns()}.log"
        env = {**self.env, "N8N_RUNNERS_BROKER_PORT": str(free_port())}
        with open(out_path, "w") as out:
            proc = subprocess.run(
                [str(self.binary), "import:workflow", f"--input={path}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.user_folder.parent,
                timeout=timeout,
            )
        text = out_path.read_text(errors="replace")
        assert proc.returncode == 0, f"n8n import:workflow exited {proc.returncode}:\n{text[-4000:]}"
        return text

    def webhook_ready(self, path: str) -> bool:
        """Whether the POST webhook `path` is registered: a GET then says it is registered for POST only
        (a GET has no side effect, unlike a POST that would start an execution)."""
        try:
            r = httpx.get(f"{self.url}/webhook/{path}", timeout=5)
        except httpx.TransportError:
            return False
        return r.status_code != 404 or "not registered for GET" in r.text


EXPORTED_N8N_URL = "http://127.0.0.1:5678"  # n8n's default address, as the exports' settings assume


def load_workflow(
    filename: str,
    *,
    credentials: dict[str, dict[str, str]],
    settings: dict[str, str] | None = None,
    n8n_url: str | None = None,
) -> dict[str, Any]:
    """An export from workflows/ with credential ids filled in, the Settings node's values replaced, and
    (with `n8n_url`) the settings nodes' own-n8n URLs pointed at this n8n."""
    workflow = json.loads((WORKFLOWS / filename).read_text())
    for node in workflow["nodes"]:
        for type_ in node.get("credentials") or {}:
            node["credentials"][type_] = credentials[type_]
        if node["name"] not in ("Settings", "Form settings"):
            continue
        for assignment in node["parameters"]["assignments"]["assignments"]:
            if node["name"] == "Settings" and settings and assignment["name"] in settings:
                assignment["value"] = settings[assignment["name"]]
            elif n8n_url and str(assignment["value"]).startswith(EXPORTED_N8N_URL):
                assignment["value"] = n8n_url + assignment["value"][len(EXPORTED_N8N_URL) :]
    return workflow


@contextmanager
def running_n8n(install: N8nInstall, folder: Path, *, env: dict[str, str] | None = None) -> Iterator[N8n]:
    """`n8n start` with its user folder in `folder` (the node package installed there), owner set up."""
    user_folder = folder / "user"
    user_folder.mkdir(parents=True, exist_ok=True)
    pack_node_package(user_folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "N8N_USER_FOLDER": str(user_folder),
        "N8N_PORT": str(port),
        "N8N_HOST": "127.0.0.1",
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_PROTOCOL": "http",
        install.webhook_url_var: f"{url}/",
        "N8N_EDITOR_BASE_URL": url,
        "N8N_RUNNERS_BROKER_PORT": str(free_port()),
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false",
        "N8N_SECURE_COOKIE": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_COMMUNITY_PACKAGES_ENABLED": "true",
        "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
        "N8N_LOG_LEVEL": "info",
        "N8N_LOG_OUTPUT": "console",
        "DB_TYPE": "sqlite",
        "EXECUTIONS_DATA_PRUNE": "false",
        "NODE_ENV": "production",
        **install.env,
        **(env or {}),
    }
    log = folder / "n8n.log"
    out = open(log, "w")  # noqa: SIM115 - open for n8n's lifetime; a file, never a pipe closed early (the CLI spins on a closed stdout)
    proc = subprocess.Popen(
        [str(install.binary), "start"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=folder,
        start_new_session=True,
    )
    n8n = N8n(url, user_folder, log, proc, binary=install.binary, env=env, version=install.version)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"n8n exited with {proc.returncode}:\n{n8n.log_tail()}")
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=120, every=0.5)
        # /healthz answers while n8n is still "starting up" (HTML 200 for every route): wait for the REST API
        wait_for(
            lambda: up() and "json" in n8n.rest.get("/settings").headers.get("content-type", ""), timeout=120, every=0.5
        )
        n8n.setup_owner()
        yield n8n
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: n8n and its task runner
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        out.close()
