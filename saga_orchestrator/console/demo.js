// The demo panel: place one order or many, add stock, and set each worker's failure
// rate while it runs.

import { admin, call, get, service, WORKERS } from "./api.js";
import { action, h, view, notify, table } from "./dom.js";

const ADDRESS = {
  street: "1 Main St",
  city: "Springfield",
  state: "IL",
  zip_code: "62701",
  country: "US",
};
const CUSTOMER_KEY = "saga-console-customer";

function customer() {
  let id = sessionStorage.getItem(CUSTOMER_KEY);
  if (!id) {
    id = crypto.randomUUID();
    sessionStorage.setItem(CUSTOMER_KEY, id);
  }
  return id;
}

export async function demo() {
  const v = view();
  const placed = h("ol", { class: "placed", "data-testid": "placed" });

  async function place(event) {
    event.preventDefault();
    const f = event.target.elements;
    const product = products.find((p) => p.id === f.product.value);
    const body = {
      customer_id: customer(),
      items: [{ product_id: product.id, quantity: Number(f.quantity.value), price: product.price }],
      shipping_address: ADDRESS,
    };
    const count = Number(f.count.value);
    let ok = 0;
    for (let i = 0; i < count; i++) {
      try {
        const order = (await call("POST", service("order_service", "/orders"), body)).data;
        ok++;
        placed.prepend(h("li", { "data-order": order.id },
          h("a", { href: `#/sagas/${order.saga_id}` }, `order ${order.id.slice(0, 8)}`),
          ` ${product.name} × ${body.items[0].quantity}`));
      } catch (error) {
        notify(`order ${i + 1} of ${count} refused: ${error.message}`, "error");
        break;
      }
    }
    if (ok) notify(`${ok} order(s) placed for customer ${body.customer_id}`, "ok");
    await render();
  }

  async function addStock(event) {
    event.preventDefault();
    const f = event.target.elements;
    try {
      const answer = await call("POST", service("inventory_service", `/products/${f.product.value}/stock`),
        { quantity: Number(f.quantity.value) });
      notify(answer.message, "ok");
    } catch (error) {
      notify(`stock not changed: ${error.status} ${error.code}: ${error.message}`, "error");
    }
    await render();
  }

  async function setRate(worker, name, value) {
    try {
      const path = service(worker, `/admin/failure-rates/${name}`);
      const answer = value === null
        ? await call("DELETE", path)
        : await call("PUT", path, { rate: Number(value) });
      notify(answer.message, "ok");
    } catch (error) {
      notify(`failure rate not changed: ${error.status} ${error.code}: ${error.message}`, "error");
    }
    await render();
  }

  let products = [];

  async function render() {
    products = await get(service("inventory_service", "/products"));
    const rates = await Promise.all(
      WORKERS.map(async (w) => {
        try {
          return [w, await get(service(w, "/admin/failure-rates"))];
        } catch (error) {
          return [w, [], error.message];
        }
      }),
    );
    const options = () => products.map((p) => h("option", { value: p.id }, `${p.name} (${p.stock} left)`));
    v.mount(
      h("h2", {}, "Demo"),
      h("section", { class: "row" },
        h("form", { onsubmit: place, "data-testid": "place-form" },
          h("h3", {}, "Place orders"),
          h("label", {}, "product ", h("select", { name: "product", "data-testid": "order-product" }, options())),
          h("label", {}, "quantity ", h("input", { name: "quantity", type: "number", min: 1, max: 1000, value: 1, "data-testid": "order-quantity" })),
          h("label", {}, "orders ", h("input", { name: "count", type: "number", min: 1, max: 100, value: 1, "data-testid": "order-count" })),
          h("button", { type: "submit", "data-testid": "place" }, "Place"),
          h("p", { class: "muted" }, "as one customer of this browser session; each opens its saga"),
          placed),
        h("form", { onsubmit: addStock, "data-testid": "stock-form" },
          h("h3", {}, "Add stock"),
          h("label", {}, "product ", h("select", { name: "product", "data-testid": "stock-product" }, options())),
          h("label", {}, "units ", h("input", { name: "quantity", type: "number", min: -100000000, max: 100000000, value: 100, "data-testid": "stock-quantity" })),
          action("Add", { type: "submit", "data-testid": "add-stock" }, null, admin)),
      ),
      h("h3", {}, "Failure rates (applied by every replica within a second)"),
      table(["worker", "rate", "now", "start-up value", "", ""],
        rates.flatMap(([worker, knobs, error]) =>
          error
            ? [h("tr", {}, h("td", {}, worker), h("td", { colspan: 5, class: "error" }, error))]
            : knobs.map((k) => {
                const input = h("input", { type: "number", min: 0, max: 1, step: 0.05, value: k.rate, "data-testid": `rate-${k.name}` });
                return h("tr", { "data-rate": k.name, "data-source": k.source },
                  h("td", {}, worker),
                  h("td", {}, k.name),
                  h("td", {}, `${k.rate} (${k.source})`),
                  h("td", {}, `${k.default} (${k.env})`),
                  h("td", {}, input, action("Set", { "data-testid": `set-${k.name}` }, () => setRate(worker, k.name, input.value), admin)),
                  h("td", {}, action("Reset", { "data-testid": `reset-${k.name}` }, () => setRate(worker, k.name, null), admin)));
              }),
        ),
        { "data-testid": "failure-rates" }),
    );
  }

  await render();
}
