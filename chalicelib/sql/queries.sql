-- name: insert_task
-- Create one task row; an existing idempotency key makes it a no-op (nothing returned).
INSERT INTO dtq_tasks (id, name, queue, priority, payload, status, max_attempts,
    timeout_seconds, backoff, idempotency_key, request_hash, lock_key, schedule_id,
    webhook_url, run_at, created_at)
VALUES (%(id)s, %(name)s, %(queue)s, %(priority)s, %(payload)s, %(status)s,
    %(max_attempts)s, %(timeout_seconds)s, %(backoff)s, %(idempotency_key)s,
    %(request_hash)s, %(lock_key)s, %(schedule_id)s, %(webhook_url)s, %(run_at)s,
    %(created_at)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id

-- name: copy_tasks
-- Bulk creation of tasks without idempotency keys.
COPY dtq_tasks (id, name, queue, priority, payload, status, max_attempts, timeout_seconds,
    backoff, lock_key, schedule_id, webhook_url, run_at, created_at) FROM STDIN

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
-- guard makes stale or replayed batches no-ops. Arrays keep it one statement.
UPDATE dtq_tasks t SET
    version = s.version, status = s.status, attempts = s.attempts,
    worker_id = COALESCE(s.worker_id, t.worker_id), fence = s.fence,
    cancel_requested = s.cancel_requested, run_at = COALESCE(s.run_at, t.run_at),
    started_at = s.started_at, finished_at = s.finished_at,
    result = CASE WHEN s.has_result THEN s.result::jsonb
                  WHEN s.status = 'succeeded' THEN t.result ELSE NULL END,
    error = s.error
FROM unnest(%(id)s::uuid[], %(version)s::integer[], %(status)s::text[],
            %(attempts)s::integer[], %(worker_id)s::text[], %(fence)s::bigint[],
            %(cancel_requested)s::boolean[], %(run_at)s::timestamptz[],
            %(started_at)s::timestamptz[], %(finished_at)s::timestamptz[],
            %(result)s::text[], %(has_result)s::boolean[], %(error)s::text[])
     AS s(id, version, status, attempts, worker_id, fence, cancel_requested, run_at,
          started_at, finished_at, result, has_result, error)
WHERE t.id = s.id AND t.version < s.version

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

-- name: user_exists
SELECT 1 FROM dtq_users WHERE username = %(username)s

-- name: upsert_worker
INSERT INTO dtq_workers (worker_id, hostname, queues, mode, concurrency, last_seen_at)
VALUES (%(worker_id)s, %(hostname)s, %(queues)s, %(mode)s, %(concurrency)s, now())
ON CONFLICT (worker_id) DO UPDATE SET hostname = EXCLUDED.hostname,
    queues = EXCLUDED.queues, mode = EXCLUDED.mode, concurrency = EXCLUDED.concurrency,
    last_seen_at = now()

-- name: count_by_status
SELECT queue, status, count(*) AS n FROM dtq_tasks GROUP BY queue, status

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
