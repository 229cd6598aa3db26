// The console's one script: live job curves (server-sent events), and field <-> span highlighting on review pages.
"use strict";

function drawCurve(svg, points, label) {
  // points: [[x, y], ...] -> a polyline with its y range, drawn in a 400x160 viewBox.
  const ok = points.filter((p) => p[1] !== null && p[1] !== undefined && isFinite(p[1]));
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  add("line", { x1: 40, y1: 140, x2: 395, y2: 140 });
  if (!ok.length) { add("text", { x: 150, y: 80 }, "waiting for " + label); return; }
  const xs = ok.map((p) => p[0]), ys = ok.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const sx = (x) => 40 + ((x - x0) / (x1 - x0)) * 355, sy = (y) => 135 - ((y - y0) / (y1 - y0)) * 120;
  add("polyline", { points: ok.map((p) => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" "), "data-points": ok.length });
  add("text", { x: 2, y: 18 }, y1.toPrecision(3));
  add("text", { x: 2, y: 138 }, y0.toPrecision(3));
  add("text", { x: 40, y: 155 }, "step " + x0);
  add("text", { x: 340, y: 155 }, "step " + x1);
}

function followJob(box) {
  const points = JSON.parse(box.dataset.points || "[]");
  const loss = document.getElementById("chart-loss"), tps = document.getElementById("chart-tps");
  const redraw = () => {
    if (loss) drawCurve(loss, points.map((p) => [p[0], p[1]]), "loss");
    if (tps) drawCurve(tps, points.map((p) => [p[0], p[2]]), "tokens/s");
  };
  redraw();
  if (box.dataset.ended === "yes") return;
  const source = new EventSource("/console/data/jobs/" + box.dataset.job + "/events?after=" + box.dataset.after);
  let last = Number(box.dataset.after);
  source.onmessage = () => {};
  const onEvent = (ev) => {
    last = Math.max(last, Number(ev.lastEventId) || 0);
    const event = JSON.parse(ev.data);
    if (event.type === "progress") {
      const d = event.data;
      if (!points.length || d.step > points[points.length - 1][0]) points.push([d.step, d.loss ?? null, d.tokens_per_s ?? null]);
      document.getElementById("job-step").textContent = d.step;
      if (d.eta_s !== undefined) document.getElementById("job-eta").textContent = Math.round(d.eta_s) + " s";
      redraw();
    } else {
      document.getElementById("job-status").textContent = event.type;
      if (["succeeded", "failed", "cancelled"].includes(event.type)) { source.close(); location.reload(); }
    }
  };
  for (const type of ["progress", "started", "claimed", "succeeded", "failed", "cancelled", "cancel_requested", "requeued", "resumed", "queued", "callback"]) {
    source.addEventListener(type, onEvent);
  }
  source.onerror = () => {
    // The stream ends when the job does; reconnecting resumes after the last event seen.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 2000);
  };
}

function linkFields() {
  const marks = document.querySelectorAll("mark[data-field]");
  const rows = document.querySelectorAll("tr[data-field]");
  const select = (field) => {
    for (const el of [...marks, ...rows]) el.classList.toggle("active", el.dataset.field === field);
  };
  for (const el of [...marks, ...rows]) el.addEventListener("click", () => select(el.dataset.field));
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("curves");
  if (box) followJob(box);
  linkFields();
});
