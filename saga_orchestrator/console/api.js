// Talking to the orchestrator: its own API, and the other services' through its gateway
// (/api/v1/services/{service}/...), so the console needs no address but its own.

const KEY = "saga-console-credential";

// Who this browser session signed in as: the admin key (AUTH_MODE=none), a key
// (apikey) or a token (jwt), sent as a bearer credential; and what the orchestrator
// says of it.
export const admin = {
  key: sessionStorage.getItem(KEY),
  mode: null, // AUTH_MODE: none, apikey or jwt
  role: null,
  subject: null,
  enabled: null, // are admin actions possible at all (is ADMIN_API_KEY set, say)?
  valid: null, // were the credentials accepted (null: none sent)?
  allowed: false, // do they allow admin actions?
  message: "",
  set(key) {
    this.key = key || null;
    if (this.key) sessionStorage.setItem(KEY, this.key);
    else sessionStorage.removeItem(KEY);
  },
};

export const credentials = () => (admin.key ? { Authorization: `Bearer ${admin.key}` } : {});

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
  }
}

export async function call(method, path, body) {
  const headers = { "X-Admin-Actor": "console", ...credentials() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text };
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = async (path) => (await call("GET", path)).data;

// The other services, by the orchestrator's gateway.
export const service = (name, path) => `/services/${name}${path}`;

export const SERVICES = [
  "saga_orchestrator",
  "order_service",
  "payment_service",
  "inventory_service",
  "shipping_service",
  "notification_service",
];
export const WORKERS = ["payment_service", "shipping_service", "notification_service"];
export const STEPS = ["payment", "inventory", "shipping", "notification"];
export const STATUSES = ["running", "compensating", "completed", "cancelled", "failed"];

export async function checkAdmin() {
  const status = await get("/admin/status");
  Object.assign(admin, {
    mode: status.auth_mode,
    role: status.role,
    subject: status.subject,
    enabled: status.enabled,
    valid: status.key_valid,
    allowed: status.admin,
    message: status.message,
  });
  return status;
}
