-- The newest progress a handler reported (ctx.progress), as the task's newest recorded
-- `progress` event carried it: {"fraction", "message", "at" (epoch ms)}; null until one
-- is. Written by record_events (queries.sql); Redis holds the newest report while the
-- task's hash lives, so a read shows the newer of the two (chalicelib/service/taskview.py).
-- Nullable without a default: adding it rewrites no row.
ALTER TABLE dtq_tasks ADD COLUMN IF NOT EXISTS progress jsonb;
