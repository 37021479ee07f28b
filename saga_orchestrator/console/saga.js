// One saga: its steps as a timeline (each command to its reply; the compensations,
// in reverse, drawn apart), the messages it exchanged, what each service holds for the
// order, and the operator's Retry and Compensate.

import { admin, call, get, STEPS } from "./api.js";
import { action, badge, fields, h, view, notify, table, time } from "./dom.js";
import { follow, throttle } from "./live.js";

function duration(ms) {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// One entry of the timeline the orchestrator drew (saga_orchestrator/timeline.py).
function stepCard(saga, entry) {
  if (entry.kind === "saga") {
    const line = entry.lines[0];
    return h("li", { class: "saga-line", "data-kind": "saga", "data-status": entry.status },
      h("span", { class: "when" }, time(entry.started_at)),
      h("strong", {}, `saga ${entry.status}`),
      line.detail ? h("span", { class: "detail" }, ` ${line.detail}`) : "");
  }
  const state = saga.steps[entry.step] || {};
  return h(
    "li",
    { class: `step ${entry.kind}`, "data-kind": entry.kind, "data-step": entry.step, "data-status": entry.status },
    h("span", { class: "when" }, time(entry.started_at)),
    h("strong", {}, entry.kind === "undo" ? `undo ${entry.step}` : entry.step),
    " ",
    badge(entry.status),
    h("span", { class: "duration" }, ` ${duration(entry.duration_ms)}`),
    h("ul", { class: "lines" },
      entry.lines.map((l) => h("li", {},
        h("span", { class: "when" }, time(l.at)), ` ${l.message_type} → ${l.status}`,
        l.detail ? h("span", { class: "detail" }, ` (${l.detail})`) : ""))),
    h("p", { class: "facts", "data-testid": "step-facts" },
      `sent ${entry.sends}×`,
      entry.resends ? `, re-sent ${entry.resends}×` : "",
      entry.deadlines_passed ? `, ${entry.deadlines_passed} deadline(s) passed` : "",
      entry.kind === "do"
        ? [`, attempts ${state.attempts ?? 0}`, state.deadline && entry.status === "in_progress" ? `, deadline ${time(state.deadline)}` : ""]
        : `, compensation attempts ${state.compensation_attempts ?? 0}`,
      state.error && entry.kind === "do" && entry.status === "failed" ? `, error: ${state.error}` : ""),
  );
}

async function holdings(saga) {
  const found = await get(`/sagas/${saga.id}/holdings`);
  const names = ["order", "payment", "reservation", "shipment", "notifications"];
  return h("section", { class: "holdings", "data-testid": "holdings" },
    names.map((name) => {
      const value = found[name];
      const error = found.errors[name];
      return h("div", { "data-holding": name },
        h("h4", {}, name),
        error ? h("p", { class: "error" }, error)
          : Array.isArray(value)
            ? value.length ? value.map((v) => fields(v)) : h("p", { class: "muted" }, "none")
            : fields(value));
    }));
}

export async function saga(id) {
  const v = view();
  let result = null; // the last action's answer, kept across the live re-renders
  let reason = "";

  async function act(kind) {
    reason = document.querySelector("[data-testid=reason]").value;
    try {
      const body = kind === "compensate" ? { reason: reason || "forced by an operator" } : undefined;
      const answer = await call("POST", `/sagas/${id}/${kind}`, body);
      result = { kind: "ok", text: answer.message };
      listen(); // a saga that had ended (and its stream with it) moves again
    } catch (error) {
      result = { kind: "error", text: `${error.status} ${error.code}: ${error.message}` };
    }
    await render();
  }

  async function render() {
    const s = await get(`/sagas/${id}`);
    v.mount(
      h("h2", {}, "Saga ", h("code", {}, s.id), " ", badge(s.status)),
      h("p", { class: "facts" },
        `order ${s.order_id} · customer ${s.customer_id} · created ${time(s.created_at)} · updated ${time(s.updated_at)}`,
        s.failure_reason ? h("span", { class: "reason", "data-testid": "failure-reason" }, ` · ${s.failure_reason}`) : ""),
      h("div", { class: "actions" },
        action("Retry", { "data-testid": "retry" }, () => act("retry"), admin),
        h("input", { "data-testid": "reason", placeholder: "reason for compensating", size: 30, value: reason }),
        action("Compensate", { "data-testid": "compensate" }, () => act("compensate"), admin),
        h("span", { "data-testid": "action-result", class: result ? result.kind : "" }, result ? result.text : "")),
      h("section", { class: "row" },
        h("div", {},
          h("h3", {}, "Timeline"),
          h("p", { class: "legend" }, "steps forward: ", STEPS.join(" → "), "; compensations are drawn in red, newest last"),
          h("ol", { class: "timeline", "data-testid": "timeline" }, s.timeline.map((e) => stepCard(s, e)))),
        h("div", {},
          h("h3", {}, "Messages"),
          table(["", "type", "message id", "caused by", "at"],
            s.messages.map((m) => h("tr", { "data-type": m.type },
              h("td", {}, m.direction === "sent" ? "→" : "←"),
              h("td", {}, m.type),
              h("td", { class: "id" }, m.message_id),
              h("td", { class: "id" }, m.causation_id || ""),
              h("td", {}, time(m.at)))),
            { "data-testid": "messages" }),
          h("h3", {}, "What the services hold"),
          await holdings(s))),
    );
  }

  await render();
  const refresh = throttle(() => render().catch((e) => notify(e.message, "error")), 500);
  let stop = null;
  function listen() {
    if (stop) stop();
    stop = follow(`/sagas/${id}/stream`, refresh, () => {
      refresh();
      stop = null;
    });
  }
  listen();
  return () => stop && stop();
}
