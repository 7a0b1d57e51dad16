"use strict";
// The live page: polls /v1/dashboard/data (rates and quantiles the gateway computes over a
// few seconds), keeps the last HISTORY points of each panel in this tab and draws them with
// the vendored uPlot. A key, when the server needs one, comes from the URL fragment
// (#key=..., which browsers never send to the server) or the form, and is kept in
// sessionStorage: this tab only, gone when it closes.
const POLL_MS = 1000, HISTORY = 300, KEY = "tailguard-key";
const COLORS = ["#2563eb", "#dc2626", "#d97706", "#059669"];
const TRAFFIC = {title: "requests/s", series: [["requests_per_s", "requests"],
  ["errors_per_s", "errors (5xx)"], ["shed_per_s", "shed (429)"]]};
const DEPLOYMENT_CHARTS = [
  TRAFFIC,
  {title: "latency of successes, ms", scale: 1000, series: [["p50_s", "P50"], ["p99_s", "P99"],
    ["p999_s", "P99.9"], ["p99_objective_s", "P99 objective"]]},
  {title: "queue and batches, rows", series: [["queue_rows", "queued"],
    ["batch_rows_mean", "per batch"]]},
  {title: "replicas", series: [["replicas_ready", "ready"], ["replicas_desired", "desired"]]},
  {title: "replica service time, ms", scale: 1000, series: [["service_p50_s", "P50"],
    ["service_p99_s", "P99"]]},
];
// [field, label, scale, decimals]
const DEPLOYMENT_TILES = [["requests_per_s", "req/s", 1, 1], ["errors_per_s", "errors/s", 1, 2],
  ["shed_per_s", "shed/s", 1, 2], ["p50_s", "P50 ms", 1000, 1], ["p99_s", "P99 ms", 1000, 1],
  ["p999_s", "P99.9 ms", 1000, 1], ["queue_rows", "queued rows", 1, 0],
  ["batch_rows_mean", "rows/batch", 1, 1], ["replicas_ready", "ready", 1, 0],
  ["replicas_desired", "desired", 1, 0], ["service_p99_s", "service P99 ms", 1000, 1]];
const TENANT_TILES = DEPLOYMENT_TILES.slice(0, 3);

const panels = new Map();  // panel id -> {times, rows, charts, tiles}
window.tailguardCharts = [];  // every uPlot instance, for the browser test

const fragment = new URLSearchParams(location.hash.slice(1)).get("key");
if (fragment) {
  sessionStorage.setItem(KEY, fragment);
  history.replaceState(null, "", location.pathname);  // the key leaves the address bar
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.textContent = text;
  return node;
}

function panel(id, title, chartSpecs, tileSpecs) {
  if (panels.has(id)) return panels.get(id);
  const section = el("section", {"data-panel": id});
  section.append(el("h2", {}, title));
  const tiles = el("div", {class: "tiles"}), charts = el("div", {class: "charts"});
  section.append(tiles, charts);
  document.getElementById("panels").append(section);
  const p = {times: [], rows: [], charts: [], tiles: {}, chartSpecs};
  for (const [field, label] of tileSpecs) {
    const tile = el("div", {class: "tile"});
    const value = el("span", {class: "v", "data-panel": id, "data-field": field}, "–");
    tile.append(value, el("label", {}, label));
    tiles.append(tile);
    p.tiles[field] = value;
  }
  for (const spec of chartSpecs) {
    const box = el("div");
    charts.append(box);
    const opts = {title: spec.title, width: 420, height: 200, scales: {x: {time: true}},
      legend: {live: false},  // the tiles carry the numbers: no cursor values
      series: [{}, ...spec.series.map(([, label], i) => ({label, stroke: COLORS[i],
        width: 1.5, spanGaps: false}))]};
    const chart = new uPlot(opts, [[], ...spec.series.map(() => [])], box);
    p.charts.push(chart);
    window.tailguardCharts.push(chart);
  }
  panels.set(id, p);
  return p;
}

function show(p, row, tileSpecs, t) {
  p.times.push(t);
  p.rows.push(row);
  if (p.times.length > HISTORY) { p.times.shift(); p.rows.shift(); }
  p.chartSpecs.forEach((spec, i) => {
    const scale = spec.scale || 1;
    p.charts[i].setData([p.times, ...spec.series.map(([field]) =>
      p.rows.map(r => (r[field] == null ? null : r[field] * scale)))]);
  });
  for (const [field, , scale, decimals] of tileSpecs) {
    const v = row[field];
    p.tiles[field].textContent = v == null ? "–" : (v * scale).toFixed(decimals);
  }
}

function draw(data) {
  const t = Date.now() / 1000;
  document.getElementById("scope").textContent =
    data.scope === "all" ? "all deployments and tenants" : `tenant ${data.scope}`;
  for (const row of data.deployments) {
    show(panel(`deployment:${row.name}`, `deployment ${row.name}`, DEPLOYMENT_CHARTS,
      DEPLOYMENT_TILES), row, DEPLOYMENT_TILES, t);
  }
  for (const row of data.tenants) {
    const id = `tenant:${row.tenant}/${row.deployment}`;
    show(panel(id, `tenant ${row.tenant} on ${row.deployment}`, [TRAFFIC], TENANT_TILES),
      row, TENANT_TILES, t);
  }
  const window_s = data.window_s == null ? "first sample" : `over ${data.window_s.toFixed(1)} s`;
  setStatus(`updated ${new Date().toLocaleTimeString()}, rates ${window_s}`, false);
}

function setStatus(text, bad) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = bad ? "bad" : "";
}

async function poll() {
  const key = sessionStorage.getItem(KEY);
  try {
    const resp = await fetch("/v1/dashboard/data", {cache: "no-store",
      headers: key ? {Authorization: `Bearer ${key}`} : {}});
    if (resp.status === 401) {  // no key, or a wrong one: ask, and poll again once given
      document.getElementById("login").hidden = false;
      setStatus((await resp.json()).error, true);
      return;
    }
    if (resp.ok) draw(await resp.json());
    else setStatus(`HTTP ${resp.status}`, true);
  } catch (err) {
    setStatus(`gateway unreachable: ${err}`, true);
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key").value);
  document.getElementById("login").hidden = true;
  poll();
});
poll();
