// Following the orchestrator's live saga stream (Server-Sent Events). The browser
// reconnects by itself and sends the last event's id, so a dropped stream resumes
// where it stopped.

// `onOpen` runs each time the stream (re)connects: what a page shows from a query is
// read then, so nothing that committed before the stream began is missed.
export function follow(path, onEvent, onEnd, onOpen) {
  const source = new EventSource(`/api/v1${path}`);
  const indicator = document.querySelector("[data-testid=live]");
  source.addEventListener("open", () => {
    if (indicator) indicator.dataset.state = "live";
    if (onOpen) onOpen();
  });
  source.addEventListener("error", () => indicator && (indicator.dataset.state = "reconnecting"));
  source.addEventListener("transition", (event) => onEvent(JSON.parse(event.data)));
  source.addEventListener("end", (event) => {
    source.close();
    if (onEnd) onEnd(JSON.parse(event.data));
  });
  return () => source.close();
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
