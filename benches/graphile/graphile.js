// The peer: graphile-worker draining jobs already queued (graphile_worker.add_job) with a no-op
// task. Prints "<jobs> <milliseconds>" from start until its queue is empty.
// Usage: node graphile.js CONNECTION_STRING CONCURRENCY
const { run, Logger } = require("graphile-worker");
const { Client } = require("pg");

async function main() {
  const [connectionString, concurrency] = process.argv.slice(2);
  const watcher = new Client({ connectionString });
  await watcher.connect();
  const remaining = async () =>
    Number((await watcher.query("SELECT count(*) FROM graphile_worker._private_jobs")).rows[0].count);
  const total = await remaining();
  const started = process.hrtime.bigint();
  const runner = await run({
    connectionString,
    concurrency: Number(concurrency),
    noHandleSignals: true,
    pollInterval: 1000,
    // Its default logger prints a line per job, which would measure the terminal.
    logger: new Logger(() => () => {}),
    taskList: { noop: async () => {} },
  });
  while ((await remaining()) > 0) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  await runner.stop();
  await watcher.end();
  console.log(`${total} ${ms.toFixed(0)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
