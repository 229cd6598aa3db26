"""Screenshots of each exported workflow's canvas, for workflows/README.md.

    .venv/bin/python scripts/screenshot_workflows.py [workflows/x.json ...]     (or: make screenshots)

Starts a throwaway n8n (tests/n8n_server.py: the node package packed into a temporary user folder,
owner account, API key), creates the credentials the workflows name (fake values: nothing runs),
imports every workflows/*.json through the public API, logs in as the owner and opens each workflow
in headless Chromium. Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
fd 3 in, fd 4 out, NUL-separated JSON), so nothing beyond the standard library is needed to talk to it.
The window is sized so that zoom-to-fit (its button, or the key "1") shows the whole workflow at about --zoom, then the
screenshot is cropped to the nodes, sticky notes and connections and written, palette-compressed, to
workflows/screenshots/<file stem>.png.

Needs n8n (scripts/install_n8n.sh) and Chromium (Debian: apt-get install chromium; or CHROMIUM=<binary>).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from n8n_server import WORKFLOWS, N8n, find_n8n, load_workflow, running_n8n

OUT = WORKFLOWS / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "chrome-headless-shell", "google-chrome", "chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
                  "--mute-audio", "--font-render-hinting=none"]
# Fake but well-formed values for the credential types the exports name (pictures only: nothing runs).
FAKE_CREDENTIALS: dict[str, dict[str, Any]] = {
    "tunebridgeApi": {"baseUrl": "http://127.0.0.1:8000", "apiKey": "tb-screenshot",
                      "allowedHttpRequestDomains": "all"},
    "httpHeaderAuth": {"name": "Authorization", "value": "Bearer tb-screenshot"},
}
FIT_PADDING = 0.2  # n8n's zoom-to-fit: vue-flow fitView({padding: 0.2, maxZoom: 1})
MARGIN = 24        # px of canvas kept around the content in the crop


# --- Chromium over the DevTools protocol ------------------------------------------------------------

class Chromium:
    """Headless Chromium with its DevTools protocol on a pipe; `send` calls one method and waits."""

    def __init__(self, binary: str, profile: Path, *, width: int, height: int):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.log = open(profile / "chromium.log", "w")  # noqa: SIM115 - for Chromium's lifetime
        # The pipe ends come in as stdin and stdout; the shell makes them fds 3 and 4 and gives Chromium
        # /dev/null and its log instead (stdout must not write into the protocol pipe).
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', "sh", binary, *CHROMIUM_FLAGS,
             "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdin=to_chrome_r, stdout=from_chrome_w, stderr=self.log, start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its DevTools pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False,
             timeout: float = 30) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:  # events (no id) are not needed here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def press(self, key: str, code: str, key_code: int) -> None:
        for type_ in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": type_, "key": key, "code": code,
                                                 "windowsVirtualKeyCode": key_code,
                                                 "text": key if type_ == "keyDown" and len(key) == 1 else ""})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", browser=True, timeout=5)
            except (RuntimeError, TimeoutError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)
        self.log.close()


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


# --- n8n: credentials and workflows -------------------------------------------------------------------

def fake_from_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Placeholder data for a credential type not in FAKE_CREDENTIALS, from its public-API schema: the
    required fields, and each field an `if` looks at set so that the `if` fails (n8n's schemas say
    `if {x: {enum: [v]}} then required [...]`, and an absent x passes such an `if`)."""
    if not schema:
        return None
    properties = schema.get("properties", {})

    def value(name: str, avoid: tuple[Any, ...] | list[Any] = ()) -> Any:
        spec = properties.get(name, {})
        choices = spec.get("enum") or {"boolean": [False, True], "number": [0, 1], "integer": [0, 1]}.get(
            spec.get("type"), ["screenshot", "other"])
        return next((c for c in choices if c not in avoid), choices[0])

    data = {name: value(name) for name in schema.get("required", [])}
    for rule in schema.get("allOf", []):
        for name, condition in rule.get("if", {}).get("properties", {}).items():
            if name in properties:
                data[name] = value(name, condition.get("enum", []))
    return data


def import_workflows(n8n: N8n, files: list[Path]) -> dict[Path, dict[str, Any]]:
    """Each export (in workflows/) created through the public API, its nodes' credentials filled with one
    credential of each type the exports name; file -> the created workflow (+ nodeCount)."""
    names: dict[str, str] = {}
    for file in files:
        for node in json.loads(file.read_text())["nodes"]:
            for type_, ref in (node.get("credentials") or {}).items():
                names.setdefault(type_, ref.get("name") or type_)
    credentials: dict[str, dict[str, str]] = {}
    for type_, name in names.items():
        data = FAKE_CREDENTIALS.get(type_) or fake_from_schema(n8n.credential_schema(type_))
        try:
            created = n8n.create_credential(name, type_, data or {})
            credentials[type_] = {"id": created["id"], "name": created["name"]}
        except AssertionError as e:  # the picture still comes out, the node with a credential warning
            print(f"warning: no {type_} credential ({str(e)[:200]}); its nodes show a warning", file=sys.stderr)
            credentials[type_] = {"id": "", "name": name}
    created = {}
    for file in files:
        workflow = load_workflow(file.name, credentials=credentials)
        created[file] = {**n8n.create_workflow(workflow), "nodeCount": len(workflow["nodes"])}
    return created


# --- the canvas ----------------------------------------------------------------------------------

# Everything in screen pixels. `content`: the visible parts of nodes (names below them, output labels,
# the + of open outputs), sticky notes and connections; a node's hover toolbar is left out.
MEASURE = """(() => {
  const box = r => ({x: r.left, y: r.top, right: r.right, bottom: r.bottom});
  const union = rects => rects.reduce((u, r) => u ? {x: Math.min(u.x, r.x), y: Math.min(u.y, r.y),
      right: Math.max(u.right, r.right), bottom: Math.max(u.bottom, r.bottom)} : r, null);
  const pane = document.querySelector('.vue-flow__transformationpane');
  const flow = document.querySelector('.vue-flow');
  if (!pane || !flow) return null;
  const nodes = [...document.querySelectorAll('.vue-flow__node')];
  const parts = [];
  for (const el of document.querySelectorAll(
      '.vue-flow__node, .vue-flow__node *, .vue-flow__edge, .vue-flow__edge-labels *')) {
    if (el.closest('[data-test-id="canvas-node-toolbar"]')) continue;
    if (!el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) parts.push(box(r));
  }
  const images = [...document.querySelectorAll('.vue-flow__node img')];
  return {
    path: location.pathname,
    count: nodes.length,
    zoom: new DOMMatrix(getComputedStyle(pane).transform).a,
    window: {width: innerWidth, height: innerHeight},
    canvas: box(flow.getBoundingClientRect()),
    nodes: union(nodes.map(n => box(n.getBoundingClientRect()))),
    content: union(parts),
    ready: document.fonts.status === 'loaded' && images.every(i => i.complete && i.naturalWidth > 0),
    dialogs: [...document.querySelectorAll('[role=dialog], .el-overlay, .modal')]
      .filter(d => d.checkVisibility({opacityProperty: true, visibilityProperty: true})).length,
  };
})()"""

# Overlays on the canvas (zoom buttons, minimap, "Execute workflow", toasts) are hidden for the picture.
HIDE_OVERLAYS = """(() => {
  const style = document.createElement('style');
  style.textContent = `.vue-flow__panel, [data-test-id="canvas-controls"], [class*="_executionButtons_"],
    .el-notification, [data-test-id="canvas-node-toolbar"] {visibility: hidden !important}`;
  document.head.appendChild(style);
  document.activeElement && document.activeElement.blur();
  return true;
})()"""

ZOOM_TO_FIT = """(() => {
  const button = document.querySelector('[data-test-id="zoom-to-fit"]');
  if (button) button.click();
  return !!button;
})()"""


def wait_for_canvas(chrome: Chromium, workflow: dict[str, Any], *, timeout: float = 90,
                    zoom: float | None = None) -> dict[str, Any]:
    """The workflow's canvas with all its nodes drawn, icons and fonts loaded, no dialog over it, and the
    same layout twice in a row (after a zoom: at `zoom`, or the same layout for 10 s if it never gets there)."""
    start = time.monotonic()
    state = last = None
    while time.monotonic() - start < timeout:
        state = chrome.evaluate(MEASURE)
        if state and state["dialogs"]:
            chrome.press("Escape", "Escape", 27)  # a first-run modal or survey over the canvas
            last = None
        elif (state and state["path"].endswith(f"/workflow/{workflow['id']}") and state["ready"]
              and state["count"] >= workflow["nodeCount"] and state["content"]):
            stable = last is not None and state["content"] == last["content"] and state["zoom"] == last["zoom"]
            at_zoom = zoom is None or abs(state["zoom"] - zoom) <= 0.02 * zoom or time.monotonic() - start > 10
            if stable and at_zoom:
                return state
            last = state
        else:
            last = None
        time.sleep(0.4)
    raise TimeoutError(f"the canvas of {workflow['name']!r} did not settle in {timeout} s; last state: {state}")


def screenshot(chrome: Chromium, url: str, workflow: dict[str, Any], *, zoom: float, max_size: tuple[int, int],
               timeout: float = 90) -> bytes:
    """PNG bytes: the workflow fitted at about `zoom` (at most `max_size` px), cropped to its content."""
    chrome.send("Page.navigate", {"url": f"{url}/workflow/{workflow['id']}"})
    state = wait_for_canvas(chrome, workflow, timeout=timeout)
    # Size the window so that zoom-to-fit (padding 0.2 around the nodes' boxes, zoom at most 1) lands on
    # `zoom`: the canvas is the window less n8n's header, sidebar and log bar.
    nodes, canvas, window = state["nodes"], state["canvas"], state["window"]
    world_w = (nodes["right"] - nodes["x"]) / state["zoom"]
    world_h = (nodes["bottom"] - nodes["y"]) / state["zoom"]
    chrome_w = math.ceil(window["width"] - (canvas["right"] - canvas["x"]))
    chrome_h = math.ceil(window["height"] - (canvas["bottom"] - canvas["y"]))
    fit = 1 + FIT_PADDING
    scale = min(zoom, (max_size[0] - chrome_w) / (world_w * fit), (max_size[1] - chrome_h) / (world_h * fit))
    chrome.resize(math.ceil(world_w * fit * scale) + chrome_w + 2, math.ceil(world_h * fit * scale) + chrome_h + 2)
    if not chrome.evaluate(ZOOM_TO_FIT):
        chrome.press("1", "Digit1", 49)  # n8n's shortcut for zoom to fit
    chrome.evaluate(HIDE_OVERLAYS)
    state = wait_for_canvas(chrome, workflow, timeout=timeout, zoom=min(scale, 1.0))
    if abs(state["zoom"] - scale) > 0.02 * scale:
        print(f"  warning: zoom {state['zoom']:.2f}, not {scale:.2f} (n8n's zoom limits?)", file=sys.stderr)
    content, canvas = state["content"], state["canvas"]
    x0, y0 = max(canvas["x"], content["x"] - MARGIN), max(canvas["y"], content["y"] - MARGIN)
    x1, y1 = min(canvas["right"], content["right"] + MARGIN), min(canvas["bottom"], content["bottom"] + MARGIN)
    shot = chrome.send("Page.captureScreenshot", {"format": "png", "clip": {
        "x": math.floor(x0), "y": math.floor(y0), "width": math.ceil(x1 - x0), "height": math.ceil(y1 - y0),
        "scale": 1}})
    print(f"  zoom {state['zoom']:.2f}, {math.ceil(x1 - x0)}x{math.ceil(y1 - y0)} px", file=sys.stderr)
    return base64.b64decode(shot["data"])


def compress(png: bytes) -> bytes:
    """A 256-colour palette PNG (a canvas has few colours; text stays sharp), or the original without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                                dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="exports in workflows/ (default: all of workflows/*.json)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for <file stem>.png (default: %(default)s)")
    parser.add_argument("--zoom", type=float, default=1.0, help="canvas zoom, at most 1 (default: %(default)s)")
    parser.add_argument("--max-width", type=int, default=3600, help="window width cap; a wider workflow is zoomed out")
    parser.add_argument("--max-height", type=int, default=2400, help="window height cap")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to wait for each canvas")
    args = parser.parse_args(argv)
    files = [WORKFLOWS / f.name for f in args.files] or sorted(WORKFLOWS.glob("*.json"))
    missing = [f.name for f in files if not f.exists()]
    if missing:
        parser.error(f"not in {WORKFLOWS}: {', '.join(missing)}")
    n8n_install, why = find_n8n()
    chromium = find_chromium()
    if n8n_install is None or chromium is None:
        print(why or "Chromium not found: apt-get install chromium, or set CHROMIUM=<binary>", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tunebridge-screenshots-") as tmp:
        folder, profile = Path(tmp) / "n8n", Path(tmp) / "chromium"
        folder.mkdir()
        profile.mkdir()
        with running_n8n(n8n_install, folder) as n8n:
            workflows = import_workflows(n8n, files)
            chrome = Chromium(chromium, profile, width=1800, height=1000)
            try:
                chrome.open_page()
                chrome.resize(1800, 1000)
                chrome.send("Network.setCookie", {"name": "n8n-auth", "value": n8n.login_cookie(), "url": n8n.url})
                for file, workflow in workflows.items():
                    print(f"{file.name}: {workflow['name']}", file=sys.stderr)
                    chrome.resize(1800, 1000)
                    png = compress(screenshot(chrome, n8n.url, workflow, zoom=min(args.zoom, 1.0),
                                              max_size=(args.max_width, args.max_height), timeout=args.timeout))
                    target = args.out / f"{file.stem}.png"
                    target.write_bytes(png)
                    print(f"  {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}: "
                          f"{len(png) // 1024} KB", file=sys.stderr)
            finally:
                chrome.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
