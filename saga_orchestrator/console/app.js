// The console's shell: the admin key, the pages by the URL's hash, and the live stream
// every page may follow.

import { admin, checkAdmin } from "./api.js";
import { h, notify } from "./dom.js";
import { overview } from "./overview.js";
import { sagas } from "./sagas.js";
import { saga } from "./saga.js";
import { deadLetters } from "./dlq.js";
import { auditLog } from "./audit.js";
import { demo } from "./demo.js";

const ROUTES = [
  [/^#?\/?$/, "overview", () => overview()],
  [/^#\/sagas\/([0-9a-f-]{36})$/, "sagas", (m) => saga(m[1])],
  [/^#\/sagas(\?.*)?$/, "sagas", (m) => sagas(new URLSearchParams((m[1] || "").slice(1)))],
  [/^#\/dlq(\?.*)?$/, "dlq", (m) => deadLetters(new URLSearchParams((m[1] || "").slice(1)))],
  [/^#\/audit$/, "audit", () => auditLog()],
  [/^#\/demo$/, "demo", () => demo()],
];

let leave = null; // what the page showing now has to stop (its stream, its timer)

async function route() {
  if (leave) leave();
  leave = null;
  const hash = location.hash || "#/";
  for (const [pattern, name, show] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.page === name);
    }
    try {
      leave = (await show(match)) || null;
    } catch (error) {
      notify(`could not show this page: ${error.message}`, "error");
    }
    return;
  }
  location.hash = "#/";
}

function renderAdmin() {
  const box = document.getElementById("admin");
  if (admin.enabled === false) {
    box.replaceChildren(h("span", { class: "warn", "data-testid": "admin-disabled" }, admin.message));
    return;
  }
  const state = admin.key
    ? admin.valid === false
      ? h("span", { class: "warn" }, "admin key refused")
      : h("span", { class: "ok" }, "admin key set")
    : h("span", { class: "muted" }, "no admin key: actions are off");
  const form = h(
    "form",
    {
      "data-testid": "admin-form",
      onsubmit: async (event) => {
        event.preventDefault();
        admin.set(event.target.elements.key.value.trim());
        await checkAdmin();
        renderAdmin();
        if (admin.valid === false) notify("that admin key is not valid", "error");
        route();
      },
    },
    h("input", { name: "key", type: "password", placeholder: "admin key", "data-testid": "admin-key" }),
    h("button", { type: "submit" }, admin.key ? "Change" : "Use key"),
  );
  box.replaceChildren(state, form);
}

async function start() {
  // A key in the address (as the local runner prints it) is kept for this browser
  // session and taken out of the address bar.
  const params = new URLSearchParams(location.search);
  if (params.has("key")) {
    admin.set(params.get("key"));
    history.replaceState(null, "", location.pathname + location.hash);
  }
  try {
    await checkAdmin();
  } catch (error) {
    notify(`the orchestrator does not answer: ${error.message}`, "error");
  }
  renderAdmin();
  window.addEventListener("hashchange", route);
  await route();
}

start();
