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

-- name: copy_events
-- Bulk insert of history rows whose tasks are known to exist.
COPY dtq_task_events (task_id, seq, at, event, attempt, worker_id, error, data) FROM STDIN

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
SELECT * FROM dtq_tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(name)s::text IS NULL OR name = %(name)s)
  AND (%(after_created)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: queue_of
SELECT queue FROM dtq_tasks WHERE id = %(id)s

-- name: create_event_stage
-- Staging table for a batch whose direct COPY failed because part of it was recorded
-- already (a crash between commit and acknowledgement); emptied at commit.
CREATE TEMP TABLE IF NOT EXISTS dtq_stage_events (
    task_id uuid, seq integer, at timestamptz, event text, attempt integer,
    worker_id text, error text, data jsonb) ON COMMIT DELETE ROWS

-- name: copy_stage_events
COPY dtq_stage_events (task_id, seq, at, event, attempt, worker_id, error, data) FROM STDIN

-- name: apply_stage_events
-- History rows of a replayed batch: rows already recorded are skipped.
INSERT INTO dtq_task_events (task_id, seq, at, event, attempt, worker_id, error, data)
SELECT task_id, seq, at, event, attempt, worker_id, error, data FROM dtq_stage_events
ON CONFLICT (task_id, seq) DO NOTHING

-- name: apply_snapshots
-- Each element is a task's snapshot after its newest event in the batch; the version
-- guard makes stale or replayed batches no-ops. One JSON parameter keeps it one
-- statement and costs the recorder far less than adapting thirteen arrays.
UPDATE dtq_tasks t SET
    version = s.v, status = s.st, attempts = s.att,
    worker_id = COALESCE(s.w, t.worker_id), fence = s.fence, cancel_requested = s.cr,
    run_at = COALESCE(to_timestamp(s.run / 1000.0), t.run_at),
    started_at = to_timestamp(s.sa / 1000.0), finished_at = to_timestamp(s.fa / 1000.0),
    result = CASE WHEN s.has_res THEN s.res::jsonb
                  WHEN s.st = 'succeeded' THEN t.result ELSE NULL END,
    error = s.err
FROM jsonb_to_recordset(%(snapshots)s::jsonb) AS s(
    id uuid, v integer, st text, att integer, w text, fence bigint, cr boolean,
    run bigint, sa bigint, fa bigint, res text, has_res boolean, err text)
WHERE t.id = s.id AND t.version < s.v

-- name: live_tasks
-- Non-terminal tasks of the record, in pages, for recovery and reconciliation.
SELECT * FROM dtq_tasks
WHERE status NOT IN ('succeeded', 'dead', 'canceled') AND id > %(after)s::uuid
ORDER BY id LIMIT %(limit)s

-- name: terminal_status
SELECT id, status FROM dtq_tasks WHERE id = ANY(%(ids)s)

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

-- Notifications (chalicelib/deliveries.py): the outbox of webhooks and SNS messages.

-- name: tasks_with_webhooks
-- Of these task ids, those with a webhook of their own or of their queue: a cheap first
-- pass, so that the common batch (no webhooks at all) builds no delivery rows.
SELECT t.id::text AS id FROM unnest(%(ids)s::text[]) AS s(id)
JOIN dtq_tasks t ON t.id = s.id::uuid
LEFT JOIN dtq_queue_webhooks w ON w.queue = t.queue
WHERE t.webhook_url IS NOT NULL OR w.url IS NOT NULL

-- name: schedule_deliveries
-- The recorder's batch of notifiable transitions → one delivery per channel: a webhook
-- when the task (or its queue) has a URL, SNS for every dead task. Replays are no-ops.
INSERT INTO dtq_deliveries (task_id, seq, channel, event, target, task, at, next_at)
SELECT s.id, s.seq, c.channel, 'task.' || s.event,
       CASE WHEN c.channel = 'webhook' THEN COALESCE(t.webhook_url, w.url) END,
       jsonb_build_object('id', t.id, 'name', t.name, 'queue', t.queue,
           'status', s.status, 'attempts', s.attempts, 'max_attempts', t.max_attempts,
           'worker_id', s.worker_id, 'run_at', s.run_at, 'error', s.error,
           'result', s.result::jsonb),
       s.at, now()
FROM unnest(%(id)s::uuid[], %(seq)s::integer[], %(event)s::text[], %(at)s::timestamptz[],
            %(status)s::text[], %(attempts)s::integer[], %(worker_id)s::text[],
            %(run_at)s::text[], %(error)s::text[], %(result)s::text[])
     AS s(id, seq, event, at, status, attempts, worker_id, run_at, error, result)
JOIN dtq_tasks t ON t.id = s.id
LEFT JOIN dtq_queue_webhooks w ON w.queue = t.queue
CROSS JOIN (VALUES ('webhook'), ('sns')) AS c(channel)
WHERE (c.channel = 'webhook' AND COALESCE(t.webhook_url, w.url) IS NOT NULL)
   OR (c.channel = 'sns' AND s.event = 'dead')
ON CONFLICT (task_id, seq, channel) DO NOTHING

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

-- Schedules (chalicelib/schedules.py, chalicelib/firing.py).

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
