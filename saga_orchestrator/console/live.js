// Following the orchestrator's live saga stream (Server-Sent Events), read with fetch
// rather than EventSource so that it carries the credentials the console signed in
// with. A dropped stream is asked for again after the last event's id, so it resumes
// where it stopped.

import { credentials, ApiError } from "./api.js";
import { notify } from "./dom.js";

const RECONNECT_MS = 1000;

// `onOpen` runs each time the stream (re)connects: what a page shows from a query is
// read then, so nothing that committed before the stream began is missed.
export function follow(path, onEvent, onEnd, onOpen) {
  const indicator = document.querySelector("[data-testid=live]");
  const state = (value) => indicator && (indicator.dataset.state = value);
  let stopped = false;
  let controller = null;
  let lastId = null;

  const dispatch = (event, data) => {
    if (event === "transition") onEvent(JSON.parse(data));
    if (event === "end") {
      stopped = true;
      if (onEnd) onEnd(JSON.parse(data));
    }
  };

  async function read(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "";
    let data = [];
    while (!stopped) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (data.length) dispatch(event || "message", data.join("\n"));
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const field = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (name === "event") event = field;
          else if (name === "data") data.push(field);
          else if (name === "id") lastId = field;
        }
      }
    }
  }

  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { Accept: "text/event-stream", ...credentials() };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(`/api/v1${path}`, { headers, signal: controller.signal });
        if (response.status >= 400 && response.status < 500) {
          // Refused (not signed in, the wrong role, no such saga): asking again won't help.
          const error = new ApiError(response.status, await response.json().catch(() => null));
          state("refused");
          notify(`the live stream is refused: ${error.message}`, "error");
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        state("live");
        if (onOpen) onOpen();
        await read(response);
      } catch (error) {
        if (stopped) return;
      }
      if (stopped) return;
      state("reconnecting");
      await new Promise((resume) => setTimeout(resume, RECONNECT_MS));
    }
  }

  run();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}

// At most one call of `fn` every `ms`, the last one always made.
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(function tick() {
      timer = null;
      if (again) {
        again = false;
        fn();
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}
