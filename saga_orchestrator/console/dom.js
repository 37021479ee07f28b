// Building the page: elements from tag, attributes and children; nothing is ever set as
// HTML, so what the services return is always shown as text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// The page element says which address it shows and how often it has been drawn, so
// whoever drives the console (a test, a script) can wait for the page it asked for
// instead of acting on the one it is leaving.
function mount(hash, children) {
  const page = document.getElementById("page");
  page.replaceChildren(...children);
  page.dataset.view = hash;
  page.dataset.render = String(Number(page.dataset.render || 0) + 1);
  return page;
}

// A page's hold on the screen: what a page renders late, once another page has been
// opened, is dropped instead of replacing that page.
export function view() {
  const id = ++view.current;
  const hash = location.hash || "#/";
  return {
    mount: (...children) => (id === view.current ? mount(hash, children) : null),
    get shown() {
      return id === view.current;
    },
  };
}
view.current = 0;

export function notify(text, kind = "info") {
  const el = document.getElementById("notice");
  el.className = kind;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(notify.timer);
  if (kind !== "error") notify.timer = setTimeout(() => (el.hidden = true), 6000);
}

export function dismiss() {
  document.getElementById("notice").hidden = true;
}

export const badge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, status);

export function time(value) {
  if (!value) return "";
  const at = new Date(value);
  return at.toISOString().replace("T", " ").slice(0, 23);
}

export function table(columns, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows),
  );
}

// An admin action's button: disabled, with the API's reason, while actions cannot work.
export function action(label, attrs, run, admin) {
  let why = null;
  if (admin.enabled === false) why = admin.message;
  else if (!admin.key) why = admin.mode === "none" ? "enter the admin key first" : "sign in as an admin first";
  else if (admin.mode !== "none" && admin.valid && !admin.allowed) why = `the ${admin.role} role may not do this`;
  const disabled = why !== null;
  return h(
    "button",
    { ...attrs, disabled, title: disabled ? why : undefined, onclick: run },
    label,
  );
}

export function fields(record) {
  if (!record) return h("p", { class: "muted" }, "nothing recorded");
  return h(
    "dl",
    {},
    Object.entries(record).flatMap(([k, v]) => [
      h("dt", {}, k),
      h("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? "")),
    ]),
  );
}
