-- cancel: a task not yet running ends `canceled` at once; a running task is flagged and
-- ends `canceled` at its worker's next lease extension or outcome.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  ttl ms of finished task hashes
--
-- Returns {OK} (canceled now), {CANCEL_PENDING} (running; flagged),
-- or {NOT_FOUND | ALREADY_FINISHED | CANCELED}
local id, ttl_ms = ARGV[1], tonumber(ARGV[2])
local task_key = K.task_prefix .. id
local h = redis.call('HMGET', task_key, 'st', 'lk', 'cr')
local st = h[1]
if not st then return {NOT_FOUND} end
if st == 'succeeded' or st == 'dead' then return {ALREADY_FINISHED} end
if st == 'canceled' then return {CANCELED} end
if st == 'running' then
  if h[3] ~= '1' then
    redis.call('HSET', task_key, 'cr', 1)
    emit(task_key, id, 'cancel_requested')
  end
  return {CANCEL_PENDING}
end
unlist(id)
if h[2] then redis.call('ZREM', K.lockwait_prefix .. h[2], id) end
redis.call('HSET', task_key, 'cr', 1)
finish(task_key, id, 'canceled', ttl_ms)
emit(task_key, id, 'canceled')
return {OK}
