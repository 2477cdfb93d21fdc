-- Notifications (webhooks and SNS) as a transactional outbox. The recorder schedules a
-- delivery in the same pass that records the transition which causes it, so a
-- notification exists exactly when its transition is in the record; notifiers (any
-- number, in any process) claim due deliveries with SKIP LOCKED and never block a worker.

CREATE TABLE dtq_deliveries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Cascades with retention's purge of the task; deliveries are few, so the foreign
    -- key costs little here (unlike dtq_task_events, which is COPY-bound).
    task_id     uuid NOT NULL REFERENCES dtq_tasks (id) ON DELETE CASCADE,
    -- The transition (dtq_task_events.seq) that caused it: replayed recorder batches
    -- hit the unique key and schedule nothing twice.
    seq         integer NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('webhook', 'sns')),
    event       text NOT NULL,
    -- The webhook URL (NULL for SNS: the topic is the notifier's setting).
    target      text,
    -- The task as of the transition, so that every retry sends the same body.
    task        jsonb NOT NULL,
    at          timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed', 'skipped')),
    -- Attempts started; raised when an attempt is claimed, so a notifier that dies
    -- mid-request still uses one up.
    attempts    integer NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL,
    UNIQUE (task_id, seq, channel)
);
CREATE INDEX dtq_deliveries_due ON dtq_deliveries (next_at) WHERE state = 'pending';

-- One row per attempt: what the task history shows.
CREATE TABLE dtq_delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES dtq_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL,
    ok          boolean NOT NULL,
    status_code integer,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);

-- Queue-level default webhook (PATCH /queues/{name} "webhook_url"); a task's own
-- webhook_url wins. Kept here rather than in Redis meta: it is configuration, and it must
-- survive the loss of Redis like the tasks do.
CREATE TABLE dtq_queue_webhooks (
    queue       text PRIMARY KEY,
    url         text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
