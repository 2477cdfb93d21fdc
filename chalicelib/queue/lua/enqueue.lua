-- enqueue: add tasks to one queue, or restore them (recovery, replay from the record).
-- One call carries a whole batch (a JSON array), so a bulk enqueue costs one script call
-- and one argument per queue instead of a call with a dozen arguments per task.
-- Idempotent: an existing task hash is left untouched, so a retried call or the
-- reconciler can never duplicate a task.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  JSON array of entries, each an array:
--          [id, status (queued|scheduled|retrying), run_at ms (string),
--           event to record ('' when the record already has it, as for a new task),
--           [hash field, value, ...] (name, pri, payload, max, tmo, bo, lk, att, fence, v...),
--           and, for a queue whose durability is "queue", the task's row as JSON text]
--
-- A task of a "queue" queue has no row yet: its `created` event carries the row, which the
-- recorder inserts (queries.sql insert_created) before it records the round's other
-- events. The text is embedded as it comes, never decoded here.
--
-- Returns one code per entry: OK or EXISTS; or {UNREGISTERED} and nothing done when the
-- queue is not yet in the registry of queues (its first task, or Redis lost its data):
-- the caller registers it and calls again. Recorders, sweeps and stats find queues only
-- through the registry, so no task may enter a queue that is not in it. The registry is
-- outside the queue's hash slot (Redis Cluster), so the flag in the queue's meta hash
-- stands for it here; the caller sets the flag after adding the queue to the registry.
if redis.call('HEXISTS', K.meta, 'registered') == 0 then return {UNREGISTERED} end
local entries = cjson.decode(ARGV[1])
local codes, ready, later = {}, {}, false
-- A task starts at its epoch's base version (when the epoch is not 0), so that its first
-- transition is not taken for one that crosses from an earlier epoch (_lib.lua
-- next_version); a restored task's own `v` among its fields overrides it.
local base = epoch_base()
local born = base > 0 and {'v', string.format('%d', base)} or {}
for i, e in ipairs(entries) do
  local id, status, run_at, event, fields = e[1], e[2], e[3], e[4], e[5]
  local task_key = K.task_prefix .. id
  if redis.call('EXISTS', task_key) == 1 then
    codes[i] = EXISTS
  else
    if born[1] then redis.call('HSET', task_key, born[1], born[2]) end
    if e[6] then
      -- Where a read finds the `created` event until the row is recorded: the first
      -- stream entries from this millisecond on (the script's XADD comes at its end,
      -- at this time or, after a clock step back, just after the stream's last entry).
      redis.call('HSET', task_key, 'st', status, 'run', run_at, 'ce', NOW_S, unpack(fields))
    else
      redis.call('HSET', task_key, 'st', status, 'run', run_at, unpack(fields))
    end
    if status == 'queued' then
      local pri = false  -- none given: ready_score fails loudly, as an HGET of it did
      for j = 1, #fields - 1, 2 do
        if fields[j] == 'pri' then pri = fields[j + 1] break end
      end
      ready[#ready + 1] = {pri, id}
    elseif status == 'scheduled' then
      redis.call('ZADD', K.scheduled, tonumber(run_at), id)
      later = true
    else
      redis.call('ZADD', K.retrying, tonumber(run_at), id)
      later = true
    end
    if e[6] then
      push_created(id, born[2] or '0', status, e[6])
      tl_bump('enq')
    elseif event ~= '' then
      emit(task_key, id, event)
    else
      tl_bump('enq')
    end
    codes[i] = OK
  end
end
-- The ready tasks of the batch take consecutive sequence numbers from one INCRBY and
-- enter the ready set in chunked ZADDs: a bulk enqueue costs two commands per task
-- instead of five.
if #ready > 0 then
  local seq = redis.call('INCRBY', K.seq, #ready) - #ready
  for c = 1, #ready, 500 do
    local args = {}
    for j = c, math.min(c + 499, #ready) do
      args[#args + 1] = ready_score(ready[j][1], seq + j)
      args[#args + 1] = ready[j][2]
    end
    redis.call('ZADD', K.ready, unpack(args))
  end
  wake(#ready)
elseif later then
  wake(1)  -- a waiting worker recomputes when the first of them falls due
end
return codes
