// The audit log of every admin action, from every process that has them, newest first.

import { get, service } from "./api.js";
import { h, view, table, time } from "./dom.js";

const SOURCES = [
  ["saga_orchestrator", "/admin/audit?limit=200"],
  ["inventory_service", service("inventory_service", "/admin/audit?limit=200")],
  ["payment_service", service("payment_service", "/admin/audit?limit=200")],
  ["shipping_service", service("shipping_service", "/admin/audit?limit=200")],
  ["notification_service", service("notification_service", "/admin/audit?limit=200")],
];

export async function auditLog() {
  const v = view();
  const parts = await Promise.all(
    SOURCES.map(async ([name, path]) => {
      try {
        return { name, entries: await get(path) };
      } catch (error) {
        return { name, entries: [], error: error.message };
      }
    }),
  );
  const entries = parts
    .flatMap((p) => p.entries.map((e) => ({ ...e, service: p.name })))
    .sort((a, b) => (a.at < b.at ? 1 : -1));
  v.mount(
    h("h2", {}, "Audit log"),
    parts.filter((p) => p.error).map((p) => h("p", { class: "error" }, `${p.name}: ${p.error}`)),
    table(["at", "service", "action", "target", "actor", "outcome", "detail"],
      entries.map((e) => h("tr", { "data-action": e.action, "data-outcome": e.outcome },
        h("td", {}, time(e.at)),
        h("td", {}, e.service),
        h("td", {}, e.action),
        h("td", { class: "id" }, e.target),
        h("td", {}, e.actor),
        h("td", {}, e.outcome),
        h("td", {}, e.detail || ""))),
      { "data-testid": "audit" }),
  );
}
