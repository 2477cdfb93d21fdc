-- The durable record of DTQ. Redis is the fast index of live work; every accepted task
-- and every transition it goes through lands here, and the queue can be rebuilt from it.

CREATE TABLE dtq_tasks (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    queue            text NOT NULL,
    priority         smallint NOT NULL CHECK (priority BETWEEN 0 AND 9),
    payload          jsonb NOT NULL,
    status           text NOT NULL CHECK (status IN ('scheduled', 'queued', 'running',
                         'retrying', 'succeeded', 'dead', 'canceled')),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    timeout_seconds  integer NOT NULL,
    backoff          jsonb NOT NULL,
    idempotency_key  text,
    request_hash     text,
    lock_key         text,
    schedule_id      uuid,
    webhook_url      text,
    worker_id        text,
    fence            bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    -- Whether the task started out waiting for run_at (its first history event).
    created_scheduled boolean NOT NULL DEFAULT false,
    started_at       timestamptz,
    finished_at      timestamptz,
    result           jsonb,
    error            text,
    -- Number of the last transition applied; the recorder only moves it forward, so
    -- batches applied out of order can never regress a row.
    version          integer NOT NULL DEFAULT 0
);

-- Index choice is driven by the recorder, which updates every task row at least twice
-- (claimed, finished): no index covers a column that a transition changes (status,
-- attempts, times), so those updates are HOT (no index writes) given the page room that
-- fillfactor leaves. Filters on status scan the created_at index instead; recovery and
-- retention are rare, bounded sweeps.
ALTER TABLE dtq_tasks SET (fillfactor = 50);
-- Uniqueness in the database is the real guard of idempotency.
CREATE UNIQUE INDEX dtq_tasks_idempotency_key ON dtq_tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Listing newest first, optionally per queue; id breaks ties for stable cursors.
CREATE INDEX dtq_tasks_created ON dtq_tasks (created_at DESC, id DESC);
CREATE INDEX dtq_tasks_queue_created ON dtq_tasks (queue, created_at DESC, id DESC);

CREATE TABLE dtq_task_events (
    -- No foreign key: the recorder COPYs history at tens of thousands of rows per
    -- second and a per-row FK trigger would halve that; retention deletes both sides.
    task_id    uuid NOT NULL,
    -- Transition number (the task's version after it). Creation events use -1 and 0,
    -- written with the task row; later ones come from the Redis event streams.
    seq        integer NOT NULL,
    at         timestamptz NOT NULL,
    event      text NOT NULL,
    attempt    integer NOT NULL DEFAULT 0,
    worker_id  text,
    error      text,
    data       jsonb,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE dtq_users (
    username       text PRIMARY KEY,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'worker')),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dtq_workers (
    worker_id     text PRIMARY KEY,
    hostname      text NOT NULL,
    queues        text[] NOT NULL,
    mode          text NOT NULL,
    concurrency   integer NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dtq_schedules (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    cron        text NOT NULL,
    timezone    text NOT NULL,
    task        jsonb NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    catchup     text NOT NULL CHECK (catchup IN ('all', 'latest', 'none')),
    overlap     text NOT NULL CHECK (overlap IN ('allow', 'skip')),
    last_fire_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (schedule, fire time): the unique key is what makes a fire happen once
-- however many scheduler instances tick.
CREATE TABLE dtq_schedule_fires (
    schedule_id uuid NOT NULL REFERENCES dtq_schedules (id) ON DELETE CASCADE,
    fire_at     timestamptz NOT NULL,
    task_id     uuid,
    skipped     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, fire_at)
);
