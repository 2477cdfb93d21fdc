-- Tasks committed whose Redis step failed (Redis unreachable, or it refused the call):
-- written by the creating process on that failure path only (chalicelib/service/tasks.py), and
-- emptied within seconds of Redis answering again by the dispatcher every recorder loop
-- runs (chalicelib/service/dispatch.py), which puts each task into Redis from its record. The
-- reconciler stays the safety net for a task whose row here never committed (a crash
-- between the task's commit and this insert, or PostgreSQL failing in between).
-- Independent of 0004 and 0005: it only adds this table.
CREATE TABLE IF NOT EXISTS dtq_dispatch_backlog (
    -- A task's row goes with it (retention), so no row here outlives its task.
    task_id uuid PRIMARY KEY REFERENCES dtq_tasks (id) ON DELETE CASCADE,
    noted_at timestamptz NOT NULL DEFAULT now(),
    -- Taken until then by a dispatcher (its lease), or free from then on: a dispatcher
    -- that dies mid-batch leaves its rows to another after the lease.
    next_at timestamptz NOT NULL DEFAULT now()
);
