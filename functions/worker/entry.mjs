// The txbridge Worker's entry module: worker-build's module (index.js: its shim around the
// wasm-bindgen glue) behind one guard. Whatever escapes the Rust handler (a panic, which traps
// the wasm instance, or a JavaScript exception) is answered with the contract's 503 JSON body,
// never with the runtime's plain-text 500. Nothing about the error reaches the body or the log
// beyond its kind: an exception message could name anything.
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

// A trapped wasm instance must not serve again: worker-build's shim rebuilds it on the next call
// once it has seen the trap, which it learns from the global "error" event (the exception does
// not reach the shim's own wrapper, since it is caught here).
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

export default class TxBridgeWorker extends Base {
  async fetch(request) {
    try {
      return await super.fetch(request);
    } catch (e) {
      reportTrap(e);
      console.error(
        JSON.stringify({
          level: "ERROR",
          target: "txbridge_worker::entry",
          message: "the request failed with an exception; answered 503",
          kind: e instanceof Error ? e.name : typeof e,
        }),
      );
      return unavailable();
    }
  }
}
