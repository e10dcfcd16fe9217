// graphile-worker side of the orch-bench Postgres comparison: enqueue N no-op jobs in bulk,
// drain them with concurrency 8 and graphile-worker's documented fast settings, and print one
// JSON line {"n":N,"ms":elapsed}. "Done" = its job table is empty (it deletes completed jobs).
//
// Env: GRAPHILE_DIR (where `npm install graphile-worker@0.17.3` ran), DATABASE_URL, SCHEMA, N.
"use strict";
const path = require("path");
const { createRequire } = require("module");
const req = createRequire(path.join(process.env.GRAPHILE_DIR, "package.json"));
const { run, makeWorkerUtils } = req("graphile-worker");

async function main() {
  const n = Number(process.env.N);
  const connectionString = process.env.DATABASE_URL;
  const schema = process.env.SCHEMA;
  if (!Number.isInteger(n) || n <= 0 || !connectionString || !schema) {
    throw new Error("set N, DATABASE_URL and SCHEMA");
  }
  const utils = await makeWorkerUtils({ connectionString, schema });
  await utils.migrate();
  const { Pool } = req("pg");
  const pool = new Pool({ connectionString, max: 1 });
  const remaining = async () =>
    Number((await pool.query(`select count(*)::int as c from ${schema}._private_jobs`)).rows[0].c);

  const specs = Array.from({ length: n }, (_, i) => ({ identifier: "noop", payload: { i } }));
  const start = process.hrtime.bigint();
  for (let i = 0; i < specs.length; i += 5000) {
    await utils.addJobs(specs.slice(i, i + 5000));
  }
  const runner = await run({
    noHandleSignals: true,
    taskList: { noop: async () => {} },
    preset: {
      worker: {
        connectionString,
        schema,
        concurrentJobs: 8,
        maxPoolSize: 10,
        pollInterval: 1000,
        localQueue: { size: 500 },
        completeJobBatchDelay: 0,
        logger: undefined,
      },
    },
    logger: new (req("graphile-worker").Logger)(() => () => {}),
  });
  for (;;) {
    if ((await remaining()) === 0) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  await runner.stop();
  await pool.end();
  await utils.release();
  process.stdout.write(JSON.stringify({ n, ms }) + "\n");
}

main().catch((e) => {
  process.stderr.write(`graphile bench failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
