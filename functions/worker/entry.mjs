// The txbridge Worker's entry module: worker-build's module (index.js: its shim around the
// wasm-bindgen glue) behind one guard. Whatever escapes the Rust handler is answered with the
// contract's 503 JSON body, never with the runtime's plain-text 500:
// - a JavaScript exception, or a Rust panic thrown while the handler is called (caught here);
// - a Rust panic inside the handler's future: the wasm instance traps in a microtask, the
//   handler's promise never settles, and the runtime would cancel the request with a 500. Each
//   request therefore also watches a trap counter on a timer of its own (a promise resolved from
//   another request's context is what the Workers runtime forbids), and answers 503 once the
//   instance trapped.
// Nothing about the error reaches the body or the log beyond its kind: an exception message
// could name anything. After a trap, worker-build's shim builds a fresh instance on the next call.
import Base from "./index.js";

const UNAVAILABLE = JSON.stringify({
  error: "temporarily_unavailable",
  error_description: "the service is temporarily unavailable",
});

function unavailable() {
  return new Response(UNAVAILABLE, {
    status: 503,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
      pragma: "no-cache",
      "retry-after": "2",
      "x-content-type-options": "nosniff",
    },
  });
}

function log(message, e) {
  console.error(
    JSON.stringify({
      level: "ERROR",
      target: "txbridge_worker::entry",
      message,
      kind: e instanceof Error ? e.name : typeof e,
    }),
  );
}

// How many times the wasm instance trapped (the shim sees each trap as a global "error" event).
let traps = 0;
addEventListener("error", (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) {
    traps++;
  }
});

// Tells the shim (and every watching request) about a trap caught here.
function reportTrap(e) {
  if (!(e instanceof WebAssembly.RuntimeError) || typeof globalThis.dispatchEvent !== "function") {
    return;
  }
  let event;
  try {
    event = new ErrorEvent("error", { error: e });
  } catch {
    event = new Event("error");
    Object.defineProperty(event, "error", { value: e });
  }
  globalThis.dispatchEvent(event);
}

const TRAPPED = Symbol("trapped");
const WATCH_MS = 25;

// Resolves with TRAPPED once the trap counter moves past `seen`; checked on this request's own
// timer.
function watchTraps(seen) {
  let timer;
  const trapped = new Promise((resolve) => {
    const check = () => {
      if (traps !== seen) {
        resolve(TRAPPED);
      } else {
        timer = setTimeout(check, WATCH_MS);
      }
    };
    timer = setTimeout(check, WATCH_MS);
  });
  return { trapped, stop: () => clearTimeout(timer) };
}

export default class TxBridgeWorker extends Base {
  async fetch(request) {
    const watch = watchTraps(traps);
    try {
      const response = await Promise.race([super.fetch(request), watch.trapped]);
      if (response === TRAPPED) {
        log("the wasm instance trapped while serving this request; answered 503", null);
        return unavailable();
      }
      return response;
    } catch (e) {
      reportTrap(e);
      log("the request failed with an exception; answered 503", e);
      return unavailable();
    } finally {
      watch.stop();
    }
  }
}
