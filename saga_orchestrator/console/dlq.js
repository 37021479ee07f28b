// Dead letters: the queues with their depths; one queue's messages; one message's
// headers, reason and body; replay, discard, replay all.

import { admin, call, get } from "./api.js";
import { action, fields, h, view, notify, table, time } from "./dom.js";

export async function deadLetters(params) {
  const v = view();
  const chosen = params.get("queue");
  let opened = null;

  async function run(method, path, what) {
    try {
      const answer = await call(method, path);
      notify(answer.message || what, "ok");
    } catch (error) {
      notify(`${what} failed: ${error.status} ${error.code}: ${error.message}`, "error");
    }
    opened = null;
    await render();
  }

  async function render() {
    const queues = await get("/dlq");
    const parts = [
      h("h2", {}, "Dead letters"),
      table(["queue", "from", "messages"],
        queues.map((q) => h("tr", { "data-queue": q.queue, class: q.queue === chosen ? "chosen" : "" },
          h("td", {}, h("a", { href: `#/dlq?queue=${q.queue}` }, q.queue)),
          h("td", {}, q.source_queue),
          h("td", {}, String(q.messages ?? "?")))),
        { "data-testid": "dlq-queues" }),
    ];
    if (chosen) {
      const data = await get(`/dlq/${chosen}/messages?limit=50`);
      parts.push(
        h("h3", {}, `${chosen}: ${data.total} message(s)`),
        h("div", { class: "actions" },
          action("Replay all", { "data-testid": "replay-all" },
            () => run("POST", `/dlq/${chosen}/replay`, "replay all"), admin)),
        table(["key", "type", "order", "reason", "dead-lettered", ""],
          data.items.map((m) => h("tr", { "data-key": m.key },
            h("td", { class: "id" }, m.key),
            h("td", {}, m.type || ""),
            h("td", { class: "id" }, m.order_id || ""),
            h("td", {}, m.reason),
            h("td", {}, time(m.dead_lettered_at)),
            h("td", {},
              h("button", { "data-testid": "inspect", onclick: () => { opened = m.key; render(); } }, "Inspect"),
              action("Replay", { "data-testid": "replay" },
                () => run("POST", `/dlq/${chosen}/messages/${encodeURIComponent(m.key)}/replay`, "replay"), admin),
              action("Discard", { "data-testid": "discard" },
                () => run("POST", `/dlq/${chosen}/messages/${encodeURIComponent(m.key)}/discard`, "discard"), admin)))),
          { "data-testid": "dlq-messages" }),
      );
      if (opened) {
        const letter = await get(`/dlq/${chosen}/messages/${encodeURIComponent(opened)}`);
        parts.push(
          h("section", { class: "letter", "data-testid": "letter" },
            h("h3", {}, `Message ${letter.key}`),
            h("p", {}, `reason: ${letter.reason}`, letter.error ? ` — ${letter.error}` : ""),
            h("h4", {}, "headers"), fields(letter.headers),
            h("h4", {}, "body"),
            h("pre", {}, typeof letter.body === "string" ? letter.body : JSON.stringify(letter.body, null, 2))),
        );
      }
    }
    v.mount(...parts);
  }

  await render();
}
