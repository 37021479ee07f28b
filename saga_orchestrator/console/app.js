// The console's shell: who it signed in as, the pages by the URL's hash, and the live stream
// every page may follow.

import { admin, checkAdmin } from "./api.js";
import { dismiss, h, notify } from "./dom.js";
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

// What the sign-in asks for, by AUTH_MODE.
const ASKS = { none: "admin key", apikey: "operator or admin key", jwt: "token" };

function signedIn() {
  if (admin.mode === "none") {
    if (!admin.key) return h("span", { class: "muted" }, "no admin key: actions are off");
    if (admin.valid === false) return h("span", { class: "warn" }, "admin key refused");
    return h("span", { class: "ok" }, "admin key set");
  }
  if (!admin.key) return h("span", { class: "muted" }, "not signed in");
  if (admin.valid === false) return h("span", { class: "warn" }, admin.message);
  const actions = admin.allowed ? "" : ": actions are off";
  return h("span", { class: "ok" }, `signed in as ${admin.subject} (${admin.role})${actions}`);
}

function renderAdmin() {
  const box = document.getElementById("admin");
  if (admin.enabled === false && admin.mode === "none") {
    box.replaceChildren(h("span", { class: "warn", "data-testid": "admin-disabled" }, admin.message));
    return;
  }
  const asks = ASKS[admin.mode] || "admin key";
  const use = async (key) => {
    admin.set(key);
    await checkAdmin();
    renderAdmin();
    if (admin.valid === false) notify(`that ${asks} is not valid: ${admin.message}`, "error");
    else dismiss(); // what was refused before is asked again now
    route();
  };
  const form = h(
    "form",
    {
      "data-testid": "admin-form",
      onsubmit: async (event) => {
        event.preventDefault();
        await use(event.target.elements.key.value.trim());
      },
    },
    h("input", { name: "key", type: "password", placeholder: asks, "data-testid": "admin-key" }),
    h("button", { type: "submit" }, admin.key ? "Change" : admin.mode === "none" ? "Use key" : "Sign in"),
    admin.key && admin.mode !== "none"
      ? h("button", { type: "button", "data-testid": "sign-out", onclick: () => use(null) }, "Sign out")
      : null,
  );
  box.replaceChildren(signedIn(), form);
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
