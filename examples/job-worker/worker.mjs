#!/usr/bin/env node
// Reference external worker for booking_admin.jobs.
//
// Each connection loops: one call of booking_admin.complete_and_claim_jobs records the previous
// batch's outcomes and claims the next batch, so a batch costs one round trip and one
// transaction however many jobs it holds. A batch's handlers run concurrently, each bounded by
// its job's timeout_ms.
//
// Usage: node worker.mjs [--connection=URL] [--worker-id=ID] [--batch-size=20] [--concurrency=1]
//                        [--poll-interval-ms=1000] [--handlers=./handlers.mjs] [--exit-when-empty]
// The connection defaults to DATABASE_URL (or the PG* variables). With --concurrency=N the
// worker opens N connections, named ID-1..ID-N. SIGTERM or SIGINT: stop claiming, finish the
// batch in hand, record it, exit 0. --exit-when-empty: stop once a claim comes back empty (the
// benchmark). On exit prints {"worker", "completed", "failed", "ms"} as one JSON line.
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";

const CLAIM = `SELECT id, handler, payload, timeout_ms
               FROM booking_admin.complete_and_claim_jobs($1, $2, $3, $4, $5, $6, $7)`;

export function parseArgs(argv) {
  const opts = {
    connection: process.env.DATABASE_URL,
    workerId: `${os.hostname()}-${process.pid}`,
    batchSize: 20,
    concurrency: 1,
    pollIntervalMs: 1000,
    handlers: new URL("./handlers.mjs", import.meta.url).href,
    exitWhenEmpty: false,
  };
  for (const arg of argv) {
    const [, key, value] = arg.match(/^--([a-z-]+)(?:=(.*))?$/) ?? [];
    switch (key) {
      case "connection": opts.connection = value; break;
      case "worker-id": opts.workerId = value; break;
      case "batch-size": opts.batchSize = positive(key, value); break;
      case "concurrency": opts.concurrency = positive(key, value); break;
      case "poll-interval-ms": opts.pollIntervalMs = positive(key, value); break;
      case "handlers": opts.handlers = pathToFileURL(path.resolve(value)).href; break;
      case "exit-when-empty": opts.exitWhenEmpty = true; break;
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  return opts;
}

function positive(key, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${key} must be a positive integer, not ${value}`);
  return n;
}

// Runs one job's handler, bounded by its timeout; resolves to ["ok", result] or ["error", message].
async function runOne(registry, job) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${job.timeout_ms} ms`)), job.timeout_ms);
  });
  try {
    const result = await Promise.race([registry[job.handler](job.payload, job), timeout]);
    return ["ok", result === undefined ? null : result];
  } catch (e) {
    return ["error", String(e?.message ?? e)];
  } finally {
    clearTimeout(timer);
  }
}

// One connection's loop. `state.stopping` is set by the signal handler.
async function loop(opts, registry, workerId, state, totals) {
  const client = new pg.Client({ connectionString: opts.connection, application_name: workerId });
  await client.connect();
  const handlerNames = Object.keys(registry);
  let outcome = { completed: [], results: [], failed: [], errors: [] };
  try {
    for (;;) {
      // When stopping, the last call only records: a batch size of 0 claims nothing.
      const batch = state.stopping ? 0 : opts.batchSize;
      const { rows } = await client.query({
        name: "complete_and_claim",
        text: CLAIM,
        values: [workerId, batch, handlerNames, outcome.completed, outcome.results, outcome.failed, outcome.errors],
      });
      totals.completed += outcome.completed.length;
      totals.failed += outcome.failed.length;
      outcome = { completed: [], results: [], failed: [], errors: [] };
      // A batch claimed before the signal arrived still runs and is recorded.
      if (batch === 0) break;
      if (rows.length === 0) {
        if (opts.exitWhenEmpty) break;
        await state.sleep(opts.pollIntervalMs);
        continue;
      }
      const settled = await Promise.all(rows.map((job) => runOne(registry, job)));
      rows.forEach((job, i) => {
        const [kind, value] = settled[i];
        if (kind === "ok") {
          outcome.completed.push(job.id);
          outcome.results.push(JSON.stringify(value));
        } else {
          outcome.failed.push(job.id);
          outcome.errors.push(value);
        }
      });
    }
  } finally {
    await client.end();
  }
}

export async function runWorker(opts) {
  const registry = (await import(opts.handlers)).default;
  if (!registry || Object.keys(registry).length === 0) throw new Error(`${opts.handlers} registers no handler`);
  const state = { stopping: false, wake: new Set() };
  // An idle loop's sleep ends at once when the worker is told to stop.
  state.sleep = (ms) =>
    new Promise((resolve) => {
      const done = () => { clearTimeout(t); state.wake.delete(done); resolve(); };
      const t = setTimeout(done, ms);
      state.wake.add(done);
    });
  const stop = () => {
    state.stopping = true;
    for (const wake of [...state.wake]) wake();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  const totals = { completed: 0, failed: 0 };
  const started = process.hrtime.bigint();
  const ids = opts.concurrency === 1
    ? [opts.workerId]
    : Array.from({ length: opts.concurrency }, (_, i) => `${opts.workerId}-${i + 1}`);
  await Promise.all(ids.map((id) => loop(opts, registry, id, state, totals)));
  const ms = Math.round(Number(process.hrtime.bigint() - started) / 1e6);
  return { worker: opts.workerId, ...totals, ms };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  runWorker(parseArgs(process.argv.slice(2)))
    .then((summary) => console.log(JSON.stringify(summary)))
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
