// The saga list: filters by status and step, a search by saga, order or customer id,
// pages; it follows the live stream and reloads the page it shows as sagas change.

import { get, STATUSES, STEPS } from "./api.js";
import { badge, h, view, notify, table, time } from "./dom.js";
import { follow, throttle } from "./live.js";

const PAGE_SIZE = 20;

function link(params) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined),
  );
  return `#/sagas${query.toString() ? `?${query}` : ""}`;
}

export async function sagas(params) {
  const v = view();
  const filters = {
    status: params.get("status") || "",
    step: params.get("step") || "",
    q: params.get("q") || "",
    page: Number(params.get("page") || 1),
  };
  const results = h("div", { "data-testid": "saga-results" });
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const f = event.target.elements;
        location.hash = link({ status: f.status.value, step: f.step.value, q: f.q.value.trim() });
      },
    },
    h("select", { name: "status", "data-testid": "filter-status" },
      h("option", { value: "" }, "any status"),
      STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s))),
    h("select", { name: "step", "data-testid": "filter-step" },
      h("option", { value: "" }, "any step"),
      STEPS.map((s) => h("option", { value: s, selected: s === filters.step }, `at ${s}`))),
    h("input", {
      name: "q",
      value: filters.q,
      placeholder: "saga, order or customer id",
      size: 38,
      "data-testid": "search",
    }),
    h("button", { type: "submit" }, "Show"),
    h("span", { class: "live", "data-testid": "live", "data-state": "connecting" }, "live"),
  );
  v.mount(h("h2", {}, "Sagas"), form, results);

  async function load() {
    const query = new URLSearchParams({ page: filters.page, page_size: PAGE_SIZE });
    for (const name of ["status", "step", "q"]) if (filters[name]) query.set(name, filters[name]);
    let data;
    try {
      data = await get(`/sagas?${query}`);
    } catch (error) {
      results.replaceChildren(h("p", { class: "error" }, error.message));
      return;
    }
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    results.replaceChildren(
      table(
        ["saga", "order", "customer", "status", "step", "created", "updated", "reason"],
        data.items.map((s) =>
          h("tr", { "data-saga": s.id, "data-status": s.status },
            h("td", {}, h("a", { href: `#/sagas/${s.id}` }, s.id.slice(0, 8))),
            h("td", { class: "id" }, s.order_id),
            h("td", { class: "id" }, s.customer_id || ""),
            h("td", {}, badge(s.status)),
            h("td", {}, s.current_step || ""),
            h("td", {}, time(s.created_at)),
            h("td", {}, time(s.updated_at)),
            h("td", { class: "reason" }, s.failure_reason || "")),
        ),
        { "data-testid": "saga-table" },
      ),
      h("p", { class: "pager" },
        filters.page > 1 ? h("a", { href: link({ ...filters, page: filters.page - 1 }) }, "‹ newer") : "",
        ` page ${filters.page} of ${pages} (${data.total} saga(s)) `,
        filters.page < pages ? h("a", { href: link({ ...filters, page: filters.page + 1 }), "data-testid": "next-page" }, "older ›") : ""),
    );
  }

  await load();
  const reload = throttle(() => load().catch((e) => notify(e.message, "error")), 1000);
  // the page is read again once the stream is open: what changed in between shows too
  return follow("/sagas/stream", reload, null, reload);
}
