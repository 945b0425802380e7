// An external worker draining booking_admin.jobs the way an app's worker would: claim a batch
// with claim_jobs, then complete_job each one (one round trip per job).
// Usage: node external.js CONNECTION_STRING CLIENTS BATCH HANDLER
const { Client } = require("pg");

async function drain(connectionString, workerId, batch, handler) {
  const c = new Client({ connectionString });
  await c.connect();
  let done = 0;
  for (;;) {
    const { rows } = await c.query("SELECT id FROM booking_admin.claim_jobs($1, $2, ARRAY[$3])", [workerId, batch, handler]);
    if (rows.length === 0) break;
    for (const { id } of rows) {
      await c.query("SELECT booking_admin.complete_job($1, NULL)", [id]);
    }
    done += rows.length;
  }
  await c.end();
  return done;
}

async function main() {
  const [connectionString, clients, batch, handler] = process.argv.slice(2);
  const started = process.hrtime.bigint();
  const counts = await Promise.all(
    Array.from({ length: Number(clients) }, (_, i) => drain(connectionString, `external-${i + 1}`, Number(batch), handler)),
  );
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(`${counts.reduce((a, b) => a + b, 0)} ${ms.toFixed(0)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
