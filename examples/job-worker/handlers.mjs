// The handler registry: job handler name -> async (payload, job) => result (any JSON value, or
// undefined for none). A handler that throws fails the job (retried with backoff, dead after
// max_retries). Only the handlers listed here are claimed, so several workers with different
// registries can share the queue. Replace these with your own (payment retry, ledger
// reconciliation, ...), or pass --handlers=path/to/your-module.mjs.
export default {
  // Does nothing: the benchmark's job.
  noop: async () => undefined,
  // Returns its payload after "delay_ms" (if any); a payload with "error" fails with that message.
  echo: async (payload) => {
    if (payload.delay_ms) await new Promise((resolve) => setTimeout(resolve, payload.delay_ms));
    if (payload.error) throw new Error(payload.error);
    return payload;
  },
};
