-- enqueue: add a task to its queue, or restore one (recovery, replay from the record).
-- Idempotent: an existing task hash is left untouched, so a retried call or the
-- reconciler can never duplicate a task.
--
-- KEYS[1..13]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  status to enter: queued | scheduled | retrying
-- ARGV[3]  run_at in ms (scheduled/retrying score)
-- ARGV[4]  event to record ('' when the record already has it, as for a new task)
-- ARGV[5..] hash field/value pairs (name, pri, payload, max, tmo, bo, lk, att, fence, v...)
--
-- Returns {OK} or {EXISTS}
local id, status, run_at, event = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local task_key = K.task_prefix .. id
if redis.call('EXISTS', task_key) == 1 then return {EXISTS} end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', task_key, 'st', status, 'run', run_at, unpack(fields))
if status == 'queued' then
  redis.call('ZADD', K.ready, ready_score(redis.call('HGET', task_key, 'pri')), id)
  wake(1)
elseif status == 'scheduled' then
  redis.call('ZADD', K.scheduled, run_at, id)
else
  redis.call('ZADD', K.retrying, run_at, id)
end
if event ~= '' then emit(task_key, id, event) end
return {OK}
