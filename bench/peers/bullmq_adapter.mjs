// BullMQ for `dtq bench --peers`: the Node side of bench/peers/bullmq.py.
//
//   node bullmq_adapter.mjs serve                   producer: one command per stdin line
//   node bullmq_adapter.mjs worker --concurrency C  a Worker in its own process
//
// Environment: BENCH_REDIS_URL (the peer's Redis database), BENCH_BULLMQ_DIR (the folder
// whose node_modules hold bullmq and ioredis), BENCH_STAMP_FILE (worker: where stamp
// jobs append "<t0> <start>", both in nanoseconds since the epoch, as bench/stamp.py).
//
// Producer commands, each answered by one line "ok" (or "error <message>"):
//   noops N   N jobs, one `Queue.add` per job, each awaited before the next
//   bulk N    N jobs in one `Queue.addBulk`
//   stamp T0  one stamp job; a positive T0 (a latency sample) is replaced by this
//             process's clock just before the add, so the pipe from Python is not timed
//   ping      nothing (measures the pipe)
//   pending   answers "ok <jobs waiting, delayed or active>"
// Jobs are removed when they complete or fail (`removeOnComplete`, `removeOnFail`).

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";
import readline from "node:readline";

const dir = process.env.BENCH_BULLMQ_DIR;
if (!dir) {
  console.error("bullmq_adapter: BENCH_BULLMQ_DIR is not set");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(dir), "package.json"));
const { Queue, Worker } = require("bullmq");
const { Redis } = require("ioredis");

const QUEUE = "bench";
const url = process.env.BENCH_REDIS_URL || "redis://127.0.0.1:6379/8";
const connection = () => new Redis(url, { maxRetriesPerRequest: null });

// Nanoseconds since the epoch with sub-millisecond resolution (Date.now() has ms only).
const originUs = BigInt(Math.round(performance.timeOrigin * 1000));
const nowNs = () => originUs * 1000n + BigInt(Math.round(performance.now() * 1e6));

async function serve() {
  const queue = new Queue(QUEUE, {
    connection: connection(),
    defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
  });
  await queue.waitUntilReady();
  const noop = { name: "noop", data: {} };
  const handlers = {
    async noops(arg) {
      const n = Number(arg);
      for (let i = 0; i < n; i++) await queue.add("noop", {});
    },
    async bulk(arg) {
      await queue.addBulk(Array.from({ length: Number(arg) }, () => noop));
    },
    async stamp(arg) {
      const t = BigInt(arg) > 0n ? nowNs() : BigInt(arg);
      await queue.add("stamp", { t0: t.toString() });
    },
    async ping() {},
    async pending() {
      return (await queue.count()) + (await queue.getActiveCount());
    },
  };
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === "close") break;
    try {
      const handler = handlers[cmd];
      if (!handler) throw new Error(`unknown command ${cmd}`);
      const value = await handler(arg === undefined ? "0" : arg);
      process.stdout.write(value === undefined ? "ok\n" : `ok ${value}\n`);
    } catch (err) {
      process.stdout.write(`error ${String(err).replace(/\n/g, " ")}\n`);
    }
  }
  await queue.close();
  process.exit(0);
}

async function worker(concurrency) {
  let fd = null;
  const processor = async (job) => {
    if (job.name !== "stamp") return;
    const start = nowNs();
    if (fd === null) fd = fs.openSync(process.env.BENCH_STAMP_FILE, "a", 0o644);
    fs.writeSync(fd, `${job.data.t0} ${start}\n`);
  };
  const w = new Worker(QUEUE, processor, { connection: connection(), concurrency });
  w.on("error", (err) => console.error("worker error:", err));
  const stop = async () => {
    await Promise.race([w.close(true), new Promise((r) => setTimeout(r, 1000))]);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

const [mode, flag, value] = process.argv.slice(2);
if (mode === "serve") {
  await serve();
} else if (mode === "worker") {
  await worker(flag === "--concurrency" ? Number(value) : 1);
} else {
  console.error("usage: bullmq_adapter.mjs serve | worker --concurrency C");
  process.exit(2);
}
