-- enqueue: add tasks to one queue, or restore them (recovery, replay from the record).
-- One call carries a whole batch (a JSON array), so a bulk enqueue costs one script call
-- and one argument per queue instead of a call with a dozen arguments per task.
-- Idempotent: an existing task hash is left untouched, so a retried call or the
-- reconciler can never duplicate a task.
--
-- KEYS[1..13]  the queue keys (see _lib.lua)
-- ARGV[1]  JSON array of entries, each an array:
--          [id, status (queued|scheduled|retrying), run_at ms (string),
--           event to record ('' when the record already has it, as for a new task),
--           [hash field, value, ...] (name, pri, payload, max, tmo, bo, lk, att, fence, v...)]
--
-- Returns one code per entry: OK or EXISTS
local entries = cjson.decode(ARGV[1])
local codes, queued = {}, 0
for i, e in ipairs(entries) do
  local id, status, run_at, event = e[1], e[2], e[3], e[4]
  local task_key = K.task_prefix .. id
  if redis.call('EXISTS', task_key) == 1 then
    codes[i] = EXISTS
  else
    redis.call('HSET', task_key, 'st', status, 'run', run_at, unpack(e[5]))
    if status == 'queued' then
      redis.call('ZADD', K.ready, ready_score(redis.call('HGET', task_key, 'pri')), id)
      queued = queued + 1
    elseif status == 'scheduled' then
      redis.call('ZADD', K.scheduled, tonumber(run_at), id)
    else
      redis.call('ZADD', K.retrying, tonumber(run_at), id)
    end
    if event ~= '' then emit(task_key, id, event) end
    codes[i] = OK
  end
end
-- The signal list is trimmed to 64 anyway: more pushes would wake nobody more.
if queued > 0 then wake(math.min(queued, 64)) end
return codes
