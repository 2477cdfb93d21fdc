-- name: insert_task
-- Create one task row; an existing idempotency key makes it a no-op (nothing returned).
INSERT INTO dtq_tasks (id, name, queue, priority, payload, status, max_attempts,
    timeout_seconds, backoff, idempotency_key, request_hash, lock_key, schedule_id,
    webhook_url, run_at, created_at, created_scheduled)
VALUES (%(id)s, %(name)s, %(queue)s, %(priority)s, %(payload)s, %(status)s,
    %(max_attempts)s, %(timeout_seconds)s, %(backoff)s, %(idempotency_key)s,
    %(request_hash)s, %(lock_key)s, %(schedule_id)s, %(webhook_url)s, %(run_at)s,
    %(created_at)s, %(created_scheduled)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id

-- name: copy_tasks
-- Bulk creation of tasks without idempotency keys.
COPY dtq_tasks (id, name, queue, priority, payload, status, max_attempts, timeout_seconds,
    backoff, lock_key, schedule_id, webhook_url, run_at, created_at, created_scheduled) FROM STDIN

-- name: task_by_idempotency_key
SELECT * FROM dtq_tasks WHERE idempotency_key = %(key)s

-- name: get_task
SELECT * FROM dtq_tasks WHERE id = %(id)s

-- name: get_tasks
SELECT * FROM dtq_tasks WHERE id = ANY(%(ids)s)

-- name: task_history
SELECT at, event, attempt, worker_id, error, data FROM dtq_task_events
WHERE task_id = %(id)s ORDER BY seq

-- name: list_tasks
-- Newest first; the cursor is the (created_at, id) of the last row of the previous page.
-- created_from / created_until bound the creation time ([from, until)); the bounds are
-- ranges on the leading column of dtq_tasks_created (or the second of
-- dtq_tasks_queue_created), so the scan starts and stops inside the index.
SELECT * FROM dtq_tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(name)s::text IS NULL OR name = %(name)s)
  AND (%(after_created)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created)s, %(after_id)s::uuid))
  AND created_at >= coalesce(%(created_from)s::timestamptz, '-infinity')
  AND created_at < coalesce(%(created_until)s::timestamptz, 'infinity')
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: queue_of
SELECT queue FROM dtq_tasks WHERE id = %(id)s

-- name: insert_created
-- The rows of tasks accepted by a queue of durability "queue" (their `created` events,
-- enqueue.lua): run before record_events when a batch holds any, so that the batch's
-- later transitions of the same tasks find their rows. A row inserted before (a replay,
-- or the create's own fallback when Redis failed) is kept.
INSERT INTO dtq_tasks (id, name, queue, priority, payload, status, max_attempts,
    timeout_seconds, backoff, lock_key, webhook_url, run_at, created_at, created_scheduled,
    version)
SELECT e.id, r.name, r.queue, r.priority, r.payload, e.st, r.max_attempts,
       r.timeout_seconds, r.backoff, r.lock_key, r.webhook_url,
       to_timestamp(r.run_at / 1000.0), to_timestamp(r.created_at / 1000.0),
       e.st = 'scheduled', e.v
FROM json_to_recordset(%(events)s::json) AS e(id uuid, ev text, st text, v bigint, "row" json)
CROSS JOIN LATERAL json_to_record(e."row") AS r(
    name text, queue text, priority smallint, payload jsonb, max_attempts integer,
    timeout_seconds integer, backoff jsonb, lock_key text, webhook_url text, run_at bigint,
    created_at bigint)
WHERE e.ev = 'created'
ON CONFLICT (id) DO NOTHING

-- name: record_events
-- A batch of transitions read from the queues' event streams (a JSON array of the events
-- as the Lua scripts emitted them: each a full snapshot of the recorded fields, absent
-- fields omitted) → its history rows, one snapshot per task (its newest event in the
-- batch) and the notifications it triggers, in one statement. The recorder joins the
-- stream entries' text and decodes nothing; json (not jsonb) because it is read once,
-- which parses it lazily. Snapshots are guarded by version and deliveries keyed by
-- (task, seq, channel). History rows are keyed by (task, seq); the line marked
-- "replay only" is left out of the first attempt (chalicelib/record/store.py), because
-- speculative insertion costs ≈ 3 µs per row and a batch is recorded twice only after a
-- failure between commit and XACK; such a replay fails on the key and runs again whole.
-- `created` events (durability "queue") have their row from insert_created and no
-- history row: a row implies its creation events (chalicelib/service/taskview.py).
-- Returns the batch's tasks that have no row: their snapshots could not be applied. That
-- happens when another recorder has the round holding a task's `created` event and has
-- not committed it yet; the recorder leaves such a batch pending and records it again
-- as a replay (chalicelib/service/recorder.py).
WITH e AS (
    SELECT * FROM json_to_recordset(%(events)s::json) AS e(
        id uuid, v bigint, ev text, at bigint, st text, att integer, w text, "by" text,
        err text, fence bigint, cr boolean, run bigint, sa bigint, fa bigint, res text,
        reason jsonb, pf float8, pm text, pat bigint)
), history AS (
    INSERT INTO dtq_task_events (task_id, seq, at, event, attempt, worker_id, error, data)
    SELECT id, v, to_timestamp(at / 1000.0), ev, COALESCE(att, 0), COALESCE("by", w),
           CASE WHEN ev IN ('failed', 'lease_expired') THEN err END,
           -- Only what the history shows (client.py _event_json): building jsonb for
           -- every claim and success costs ≈ 2 µs per row for nothing.
           CASE WHEN ev IN ('retrying', 'duplicate_result') THEN jsonb_strip_nulls(
               jsonb_build_object('reason', reason, 'by', "by", 'run', run))
                WHEN ev = 'progress' THEN
               jsonb_build_object('fraction', pf, 'message', pm, 'at', pat) END
    FROM e
    WHERE ev <> 'created'
    ON CONFLICT (task_id, seq) DO NOTHING  -- replay only
), snapshots AS (
    UPDATE dtq_tasks t SET
        version = s.v, status = s.st, attempts = COALESCE(s.att, 0),
        worker_id = COALESCE(s.w, t.worker_id), fence = COALESCE(s.fence, 0),
        cancel_requested = COALESCE(s.cr, false),
        run_at = COALESCE(to_timestamp(s.run / 1000.0), t.run_at),
        started_at = to_timestamp(s.sa / 1000.0), finished_at = to_timestamp(s.fa / 1000.0),
        result = CASE WHEN s.ev = 'succeeded' AND s.res IS NOT NULL THEN s.res::jsonb
                      WHEN s.st = 'succeeded' THEN t.result ELSE NULL END,
        error = s.err,
        -- The newest progress event of the batch (not always its newest event: a
        -- held-back report is written just before the attempt's outcome).
        progress = COALESCE(p.progress, t.progress)
    FROM (SELECT DISTINCT ON (id) * FROM e ORDER BY id, v DESC) s
    LEFT JOIN (SELECT DISTINCT ON (id) id,
                      jsonb_build_object('fraction', pf, 'message', pm, 'at', pat) AS progress
               FROM e WHERE ev = 'progress' ORDER BY id, v DESC) p ON p.id = s.id
    WHERE t.id = s.id AND t.version < s.v
    RETURNING t.id
), deliveries AS (
-- Notifications (docs/api.md): a webhook for succeeded, retrying and dead when the task (or
-- its queue) has a URL; SNS for every dead task.
INSERT INTO dtq_deliveries (task_id, seq, channel, event, target, task, at, next_at)
SELECT s.id, s.v, c.channel, 'task.' || s.ev, c.target,
       jsonb_build_object('id', t.id, 'name', t.name, 'queue', t.queue,
           'status', s.st, 'attempts', COALESCE(s.att, 0), 'max_attempts', t.max_attempts,
           'worker_id', s.w,
           -- The API's time format, as chalicelib.clock.iso writes it.
           'run_at', CASE WHEN s.ev = 'retrying' AND s.run IS NOT NULL
                          THEN to_char(to_timestamp(s.run / 1000.0) AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"') END,
           'error', CASE WHEN s.ev <> 'succeeded' THEN s.err END,
           'result', CASE WHEN s.ev = 'succeeded' THEN s.res::jsonb END),
       to_timestamp(s.at / 1000.0), now()
FROM e s
JOIN dtq_tasks t ON t.id = s.id
LEFT JOIN dtq_queue_webhooks w ON w.queue = t.queue
-- LATERAL: the task is looked up once per event, not once per channel.
CROSS JOIN LATERAL (VALUES ('webhook', COALESCE(t.webhook_url, w.url)), ('sns', NULL))
    AS c(channel, target)
WHERE s.ev IN ('succeeded', 'retrying', 'dead')
  AND ((c.channel = 'webhook' AND c.target IS NOT NULL) OR (c.channel = 'sns' AND s.ev = 'dead'))
ON CONFLICT (task_id, seq, channel) DO NOTHING
)
-- Only tasks whose snapshot was not applied are looked up (normally none: a snapshot is
-- skipped only when the row is at its version already, i.e. on a replay).
SELECT DISTINCT e.id::text AS id FROM e
WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.id = e.id)
  AND NOT EXISTS (SELECT 1 FROM dtq_tasks t WHERE t.id = e.id)

-- name: live_tasks
-- Non-terminal tasks of the record, in pages, for recovery and reconciliation.
SELECT * FROM dtq_tasks
WHERE status NOT IN ('succeeded', 'dead', 'canceled') AND id > %(after)s::uuid
ORDER BY id LIMIT %(limit)s

-- name: terminal_status
SELECT id, status FROM dtq_tasks WHERE id = ANY(%(ids)s)

-- name: ensure_epoch
-- The epoch row exists (migration 0005 creates it; a TRUNCATE of every table does not).
INSERT INTO dtq_epoch (epoch, reason) VALUES (0, 'created') ON CONFLICT DO NOTHING

-- name: lock_epoch
-- The epoch row, locked until the end of the transaction (chalicelib/service/epoch.py).
SELECT epoch FROM dtq_epoch FOR UPDATE

-- name: any_redis_run
SELECT 1 FROM dtq_redis_runs LIMIT 1

-- name: note_redis_run
-- A Redis server process seen; returns the run_id only when it was not seen before.
INSERT INTO dtq_redis_runs (run_id, epoch) VALUES (%(run_id)s, %(epoch)s)
ON CONFLICT (run_id) DO NOTHING
RETURNING run_id

-- name: raise_epoch
UPDATE dtq_epoch SET epoch = epoch + 1, raised_at = now(), reason = %(reason)s
RETURNING epoch

-- name: upsert_user
INSERT INTO dtq_users (username, password_hash, role) VALUES (%(username)s, %(hash)s, %(role)s)
ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role

-- name: get_user
SELECT username, password_hash, role FROM dtq_users WHERE username = %(username)s

-- name: upsert_worker
INSERT INTO dtq_workers (worker_id, hostname, queues, mode, concurrency, last_seen_at)
VALUES (%(worker_id)s, %(hostname)s, %(queues)s, %(mode)s, %(concurrency)s, now())
ON CONFLICT (worker_id) DO UPDATE SET hostname = EXCLUDED.hostname,
    queues = EXCLUDED.queues, mode = EXCLUDED.mode, concurrency = EXCLUDED.concurrency,
    last_seen_at = now()

-- name: purge_finished
-- Retention: terminal tasks finished before the cutoff, oldest first, in bounded
-- batches (walks the created_at index: a task finishes after it was created).
WITH gone AS (
    DELETE FROM dtq_tasks WHERE id IN (
        SELECT id FROM dtq_tasks
        WHERE created_at < %(before)s AND status IN ('succeeded', 'dead', 'canceled')
          AND finished_at < %(before)s
        ORDER BY created_at LIMIT %(limit)s)
    RETURNING id, queue)
, history AS (DELETE FROM dtq_task_events e USING gone WHERE e.task_id = gone.id)
SELECT id, queue FROM gone

-- Notifications (chalicelib/record/deliveries.py): the outbox of webhooks and SNS messages.

-- name: claim_deliveries
-- Due deliveries for one notifier: the attempt is counted and the row hidden for the
-- lease, so a notifier that dies mid-request leaves it to another after the lease.
UPDATE dtq_deliveries d
SET attempts = d.attempts + 1, next_at = now() + make_interval(secs => %(lease_s)s)
FROM (SELECT id FROM dtq_deliveries
      WHERE state = 'pending' AND next_at <= now() AND (%(channel)s::text IS NULL OR channel = %(channel)s)
      ORDER BY next_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due
WHERE d.id = due.id
RETURNING d.id, d.task_id, d.channel, d.event, d.target, d.task, d.at, d.attempts

-- name: insert_delivery_attempt
INSERT INTO dtq_delivery_attempts (delivery_id, attempt, at, ok, status_code, error)
VALUES (%(id)s, %(attempt)s, now(), %(ok)s, %(status_code)s, %(error)s)
ON CONFLICT (delivery_id, attempt) DO NOTHING

-- name: finish_delivery
-- After an attempt: delivered, failed for good, or due again after the backoff. Only the
-- holder of the latest attempt may move the row (a notifier whose lease ran out may not).
UPDATE dtq_deliveries
SET state = %(state)s, next_at = now() + make_interval(secs => %(delay_s)s)
WHERE id = %(id)s AND attempts = %(attempt)s AND state = 'pending'

-- name: delivery_history
-- Every attempt of a task's deliveries, for GET /tasks/{id}.
SELECT a.at, a.attempt, a.ok, a.status_code, a.error, d.channel, d.event, d.target,
       d.task
FROM dtq_deliveries d JOIN dtq_delivery_attempts a ON a.delivery_id = d.id
WHERE d.task_id = %(id)s
ORDER BY a.at, d.id, a.attempt

-- name: task_deliveries
SELECT id, channel, event, target, state, attempts, next_at FROM dtq_deliveries
WHERE task_id = %(id)s ORDER BY id

-- name: set_queue_webhook
INSERT INTO dtq_queue_webhooks (queue, url) VALUES (%(queue)s, %(url)s)
ON CONFLICT (queue) DO UPDATE SET url = EXCLUDED.url, updated_at = now()

-- name: delete_queue_webhook
DELETE FROM dtq_queue_webhooks WHERE queue = %(queue)s

-- name: queue_webhooks
SELECT queue, url FROM dtq_queue_webhooks WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s)

-- Schedules (chalicelib/service/schedules.py, chalicelib/service/firing.py).

-- name: insert_schedule
-- A taken name returns nothing (409), rather than an exception mid-transaction.
INSERT INTO dtq_schedules (id, name, cron, timezone, task, enabled, catchup, overlap,
    source, last_fire_at, created_at, updated_at)
VALUES (%(id)s, %(name)s, %(cron)s, %(timezone)s, %(task)s, %(enabled)s, %(catchup)s,
    %(overlap)s, %(source)s, NULL, %(now)s, %(now)s)
ON CONFLICT (name) DO NOTHING
RETURNING *

-- name: get_schedule
SELECT * FROM dtq_schedules WHERE id = %(id)s

-- name: list_schedules
SELECT * FROM dtq_schedules ORDER BY name

-- name: update_schedule
-- The whole row, merged by the caller; last_fire_at restarts the fire window when the
-- schedule is re-enabled or its times change.
UPDATE dtq_schedules SET name = %(name)s, cron = %(cron)s, timezone = %(timezone)s,
    task = %(task)s, enabled = %(enabled)s, catchup = %(catchup)s, overlap = %(overlap)s,
    source = %(source)s, last_fire_at = %(last_fire_at)s, updated_at = %(now)s
WHERE id = %(id)s
RETURNING *

-- name: delete_schedule
DELETE FROM dtq_schedules WHERE id = %(id)s RETURNING id

-- name: enabled_schedules
SELECT * FROM dtq_schedules WHERE enabled ORDER BY id

-- name: lock_schedule
-- One scheduler instance works on a schedule at a time; the others skip it this tick
-- (the unique fire row would stop them anyway, this saves them the work).
SELECT * FROM dtq_schedules WHERE id = %(id)s AND enabled FOR UPDATE SKIP LOCKED

-- name: insert_fire
-- The guard of exactly-once: whoever inserts the (schedule, fire time) row creates its
-- task; everyone else gets nothing back.
INSERT INTO dtq_schedule_fires (schedule_id, fire_at, task_id, skipped, created_at)
VALUES (%(schedule_id)s, %(fire_at)s, NULL, %(skipped)s, %(now)s)
ON CONFLICT (schedule_id, fire_at) DO NOTHING
RETURNING fire_at

-- name: set_fire_task
UPDATE dtq_schedule_fires SET task_id = %(task_id)s
WHERE schedule_id = %(schedule_id)s AND fire_at = %(fire_at)s

-- name: advance_schedule
-- GREATEST ignores NULL, and never moves the window back.
UPDATE dtq_schedules SET last_fire_at = GREATEST(last_fire_at, %(at)s) WHERE id = %(id)s

-- name: previous_fire_task
-- The task of the schedule's latest fire that produced one (for overlap: "skip").
SELECT task_id FROM dtq_schedule_fires
WHERE schedule_id = %(schedule_id)s AND task_id IS NOT NULL
ORDER BY fire_at DESC LIMIT 1

-- name: last_fires
SELECT fire_at, task_id, skipped FROM dtq_schedule_fires
WHERE schedule_id = %(schedule_id)s ORDER BY fire_at DESC LIMIT %(limit)s

-- name: purge_schedule_fires
-- Retention of fire records older than the cutoff, in bounded batches; each schedule
-- keeps its newest fire, which overlap "skip" looks at.
WITH gone AS (
    DELETE FROM dtq_schedule_fires WHERE (schedule_id, fire_at) IN (
        SELECT o.schedule_id, o.fire_at FROM dtq_schedule_fires o
        WHERE o.fire_at < %(before)s AND EXISTS (
            SELECT 1 FROM dtq_schedule_fires n
            WHERE n.schedule_id = o.schedule_id AND n.fire_at > o.fire_at)
        LIMIT %(limit)s)
    RETURNING 1)
SELECT count(*) AS n FROM gone

-- The recorder's exceptions (chalicelib/service/recorder.py, chalicelib/record/store.py record).

-- name: history_conflicts
-- Run only after a batch was replayed (record_events with its "replay only" line): the
-- batch's history rows whose (task, seq) holds another event or time than the batch
-- says. A pure replay finds none; a conflict means two different transitions got the
-- same number (e.g. a task's Redis state restored from an older record), and the
-- batch's one was dropped by ON CONFLICT DO NOTHING. Run after the replay, so that two
-- differing events of one (task, seq) within the batch are found too.
SELECT e.id AS task_id, e.v AS seq, h.event AS recorded_event, h.at AS recorded_at,
       e.ev AS event, to_timestamp(e.at / 1000.0) AS at, t.queue
FROM json_to_recordset(%(events)s::json) AS e(id uuid, v bigint, ev text, at bigint)
JOIN dtq_task_events h ON h.task_id = e.id AND h.seq = e.v
LEFT JOIN dtq_tasks t ON t.id = e.id
WHERE h.event IS DISTINCT FROM e.ev OR h.at IS DISTINCT FROM to_timestamp(e.at / 1000.0)
ORDER BY e.id, e.v

-- name: park_event
-- A stream entry PostgreSQL refused, set aside; returns nothing when it was parked
-- before (a crash between that commit and the XDEL).
INSERT INTO dtq_parked_events (stream, queue, entry_id, entry, error)
VALUES (%(stream)s, %(queue)s, %(entry_id)s, %(entry)s, %(error)s)
ON CONFLICT (stream, entry_id) DO NOTHING
RETURNING id

-- name: parked_events
-- Newest first, optionally of one queue.
SELECT id, stream, queue, entry_id, entry, error, parked_at FROM dtq_parked_events
WHERE %(queue)s::text IS NULL OR queue = %(queue)s
ORDER BY id DESC LIMIT %(limit)s

-- The dispatch backlog (chalicelib/service/dispatch.py): committed tasks whose Redis step failed.

-- name: note_dispatch_backlog
-- Written on that failure path only (chalicelib/service/tasks.py). A task noted again (a
-- repeated create with its idempotency key) keeps its row.
INSERT INTO dtq_dispatch_backlog (task_id) SELECT unnest(%(ids)s::uuid[])
ON CONFLICT (task_id) DO NOTHING

-- name: take_dispatch_backlog
-- Due rows, oldest task first (UUIDv7 ids sort in creation order, so the tasks enter
-- their ready sets in the order they were accepted), with the task rows to restore. Each
-- row is hidden for the lease: dispatchers share the backlog (SKIP LOCKED), and one that
-- dies mid-batch leaves its rows to another. On an empty backlog this updates nothing
-- and writes nothing: a dispatcher's look once a second costs one round trip.
WITH taken AS (
    UPDATE dtq_dispatch_backlog b SET next_at = now() + make_interval(secs => %(lease_s)s)
    FROM (SELECT task_id FROM dtq_dispatch_backlog WHERE next_at <= now()
          ORDER BY task_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due
    WHERE b.task_id = due.task_id
    RETURNING b.task_id)
SELECT t.* FROM taken JOIN dtq_tasks t ON t.id = taken.task_id ORDER BY t.id

-- name: settle_dispatch_backlog
-- After a batch: the rows of the tasks it dealt with go; the rest (Redis failed midway)
-- are due again at once rather than after the lease.
WITH gone AS (DELETE FROM dtq_dispatch_backlog WHERE task_id = ANY(%(done)s::uuid[]))
UPDATE dtq_dispatch_backlog SET next_at = now() WHERE task_id = ANY(%(undone)s::uuid[])
