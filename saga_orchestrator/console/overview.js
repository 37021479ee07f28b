// Overview: sagas by status, throughput and compensations over the last minutes, step
// latency, dead letters, outbox backlogs and the health of all six services.

import { get, service, SERVICES, STATUSES } from "./api.js";
import { h, view, notify, table } from "./dom.js";

const REFRESH = 5000;

function bars(buckets, key, label) {
  const peak = Math.max(0, ...buckets.map((b) => b[key]));
  const scale = peak || 1;
  const width = 6;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${buckets.length * width} 40`);
  svg.setAttribute("class", "bars");
  buckets.forEach((b, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = (b[key] / scale) * 40;
    rect.setAttribute("x", i * width);
    rect.setAttribute("y", 40 - height);
    rect.setAttribute("width", width - 1);
    rect.setAttribute("height", height);
    svg.append(rect);
  });
  const last = buckets.length ? buckets[buckets.length - 1][key] : 0;
  return h("figure", {}, svg, h("figcaption", {}, `${label}: ${last.toFixed(2)}/s now, peak ${peak.toFixed(2)}/s`));
}

// The figures of a Prometheus exposition the console needs, summed by metric name.
function sample(text, name) {
  let total = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    total = (total || 0) + Number(line.trim().split(/\s+/).pop());
  }
  return total;
}

async function health(name) {
  const path = name === "saga_orchestrator" ? "/health" : service(name, "/health");
  try {
    const data = await get(path);
    return { name, status: data.status, detail: data };
  } catch (error) {
    return { name, status: error.status === 503 ? "unhealthy" : "unreachable", detail: error.message };
  }
}

async function backlog(name) {
  try {
    const url = name === "saga_orchestrator" ? "/metrics" : `/api/v1${service(name, "/metrics")}`;
    const response = await fetch(url);
    if (!response.ok) return null;
    return sample(await response.text(), "outbox_backlog_messages");
  } catch {
    return null;
  }
}

async function render(v) {
  const [figures, queues, healths, backlogs] = await Promise.all([
    get("/console/overview"),
    get("/dlq").catch(() => []),
    Promise.all(SERVICES.map(health)),
    Promise.all(SERVICES.map(backlog)),
  ]);
  const counts = figures.sagas_by_status;
  v.mount(
    h("h2", {}, "Overview"),
    h(
      "section",
      { class: "cards", "data-testid": "status-counts" },
      STATUSES.map((s) =>
        h("a", { class: `card ${s}`, href: `#/sagas?status=${s}`, "data-testid": `count-${s}` },
          h("strong", {}, String(counts[s] || 0)), h("span", {}, s)),
      ),
    ),
    h(
      "section",
      { class: "row" },
      h("div", { "data-testid": "throughput" },
        h("h3", {}, `Last ${figures.window_seconds / 60} minutes (${figures.bucket_seconds} s bars)`),
        bars(figures.buckets, "started_per_second", "sagas started"),
        bars(figures.buckets, "compensated_per_second", "compensations")),
      h("div", {},
        h("h3", {}, `Step latency (the last ${figures.latency_sample} completed sagas)`),
        table(["step", "p50", "p95", "samples"],
          figures.step_latency.map((s) => h("tr", { "data-step": s.step },
            h("td", {}, s.step),
            h("td", {}, s.p50_ms === null ? "" : `${s.p50_ms} ms`),
            h("td", {}, s.p95_ms === null ? "" : `${s.p95_ms} ms`),
            h("td", {}, String(s.samples)))),
          { "data-testid": "latency" })),
    ),
    h(
      "section",
      { class: "row" },
      h("div", {},
        h("h3", {}, "Services"),
        table(["service", "health", "outbox backlog"],
          healths.map((s, i) => h("tr", { "data-service": s.name },
            h("td", {}, s.name),
            h("td", {}, h("span", { class: `badge ${s.status}` }, s.status)),
            h("td", {}, backlogs[i] === null ? "?" : String(backlogs[i])))),
          { "data-testid": "services" })),
      h("div", {},
        h("h3", {}, h("a", { href: "#/dlq" }, "Dead letters")),
        table(["queue", "messages"],
          queues.map((q) => h("tr", {},
            h("td", {}, h("a", { href: `#/dlq?queue=${q.queue}` }, q.queue)),
            h("td", {}, String(q.messages ?? "?")))),
          { "data-testid": "dead-letters" })),
    ),
  );
}

export async function overview() {
  const v = view();
  await render(v);
  const timer = setInterval(() => render(v).catch((e) => notify(e.message, "error")), REFRESH);
  return () => clearInterval(timer);
}
