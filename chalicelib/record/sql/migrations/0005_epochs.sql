-- Fences and transition numbers that only grow, even when Redis loses writes.
--
-- Redis is the live state; after it restarts (its AOF may miss its last second), fails
-- over (a replica may miss the newest writes) or is rebuilt by `dtq recover`, the fences
-- and transition numbers it hands out next could repeat ones already issued. So both
-- carry an *epoch* in their high bits (number = epoch * 2^32 + count): the epoch lives
-- here, is raised whenever Redis may have lost writes, and is copied into every queue's
-- meta hash before any script runs against that Redis (chalicelib/service/epoch.py).
CREATE TABLE dtq_epoch (
    -- One row: the current epoch.
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch    bigint NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT now(),
    reason   text
);
INSERT INTO dtq_epoch (epoch, reason) VALUES (0, 'created') ON CONFLICT DO NOTHING;

-- Every Redis server process (its INFO run_id) that DTQ has worked with. A run_id not
-- seen before is a Redis that restarted or failed over: the epoch is raised once for it,
-- by whichever process inserts the row first.
CREATE TABLE dtq_redis_runs (
    run_id     text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now(),
    epoch      bigint NOT NULL
);

-- Transition numbers now carry the epoch: 32 bits no longer hold them.
ALTER TABLE dtq_tasks ALTER COLUMN version TYPE bigint;
ALTER TABLE dtq_task_events ALTER COLUMN seq TYPE bigint;
ALTER TABLE dtq_deliveries ALTER COLUMN seq TYPE bigint;
