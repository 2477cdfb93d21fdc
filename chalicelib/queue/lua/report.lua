-- report: record the outcomes of finished attempts, many per call (one worker's batch).
-- The first terminal outcome wins. A success reported on an earlier (expired) lease is
-- still accepted while nobody has finished the task; a failure on an expired lease is
-- refused (the expiry already counted that attempt as failed). A task whose cancellation
-- was requested ends `canceled` and its outcome is refused.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  ttl ms of finished task hashes
-- ARGV[2]  reporting worker id
-- ARGV[3]  random seed (backoff jitter)
-- ARGV[4..] groups of 5: task id, lease token, 's' (success) | 'f' (failure),
--           result JSON | error text, retry delay ms chosen by the handler or -1
--
-- Returns {OK, code_1, status_1, code_2, status_2, ...}: per outcome its code and, when
-- accepted, the task's new status (succeeded | retrying | dead | canceled)
local ttl_ms, worker = tonumber(ARGV[1]), ARGV[2]
math.randomseed(tonumber(ARGV[3]))
local out, ran, freed = {OK}, {}, 0

-- Worker ids as JSON text, encoded once per call (a batch is usually one worker's).
local worker_text = {}
local function encoded(w)
  local t = worker_text[w]
  if not t then
    t = cjson.encode(w)
    worker_text[w] = t
  end
  return t
end

local function succeed(task_key, id, h, result)
  -- Leaving the running set is one ZREM for the whole batch (below), not one per task.
  if h[1] == 'running' then ran[#ran + 1] = id else unlist(id) end
  local v0 = h[10]
  if h[13] then  -- a progress report the throttle held back is recorded first
    emit_progress(task_key, id)
    v0 = redis.call('HGET', task_key, 'v')
  end
  local v = next_version(task_key, id, v0)
  redis.call('HSET', task_key, 'st', 'succeeded', 'fa', NOW_S, 'res', result, 'v', INT[v])
  redis.call('HDEL', task_key, 'tok', 'lx', 'payload')
  if h[6] then release_lock(task_key, id) end
  redis.call('PEXPIRE', task_key, ARGV[1])
  bump('succeeded')
  tl_bump('ok')
  observe('run', NOW - (tonumber(h[5]) or NOW))
  push_fast(id, INT[v], 'succeeded', 'succeeded', h[7] or 0, h[9] or 0, h[8] and encoded(h[8]),
            h[5], NOW_S, h[11], h[12] or nil, result)
end

for i = 4, #ARGV, 5 do
  local id, token, kind, value, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local task_key = K.task_prefix .. id
  local h = redis.call('HMGET', task_key, 'st', 'tok', 'ptok', 'cr', 'sa', 'lk', 'att', 'wid',
                       'fence', 'v', 'run', 'err', 'pu')
  local code = check_outcome(task_key, id, h, token, worker, kind == 's')
  local status = ''
  if code == OK then freed = freed + 1 end
  if code == OK and h[4] == '1' then
    unlist(id)
    finish(task_key, id, 'canceled', ttl_ms)
    emit(task_key, id, 'canceled')
    code = CANCELED
  elseif code == OK and kind == 's' then
    succeed(task_key, id, h, value)
    status = 'succeeded'
  elseif code == OK then
    observe('run', NOW - (tonumber(h[5]) or NOW))
    status = fail_attempt(task_key, id, 'failed', value, math.random(), delay, ttl_ms)
  end
  out[#out + 1] = code
  out[#out + 1] = status
end
for i = 1, #ran, 1000 do  -- unpack() has a stack limit
  redis.call('ZREM', K.running, unpack(ran, i, math.min(i + 999, #ran)))
end
-- Slots freed under the queue's concurrency cap are work for workers the cap held back.
if freed > 0 and redis.call('HEXISTS', K.meta, 'concurrency') == 1 then
  local waiting = redis.call('ZCARD', K.ready)
  if waiting > 0 then wake(math.min(freed, waiting)) end
end
return out
