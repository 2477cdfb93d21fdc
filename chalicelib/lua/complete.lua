-- complete: record a successful outcome. The first terminal outcome wins; a result from
-- an earlier (expired) lease is still accepted while nobody has finished the task.
-- A task whose cancellation was requested ends `canceled` and the result is refused.
--
-- KEYS[1..13]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  lease token
-- ARGV[3]  result (JSON text)
-- ARGV[4]  ttl ms of finished task hashes
-- ARGV[5]  reporting worker id
--
-- Returns {OK} or {NOT_FOUND | LEASE_LOST | ALREADY_FINISHED | CANCELED}
local id, token, result, ttl_ms, worker = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local task_key = K.task_prefix .. id
local code = check_outcome(task_key, id, token, worker, true)
if code ~= OK then return {code} end
unlist(id)
if redis.call('HGET', task_key, 'cr') == '1' then
  finish(task_key, id, 'canceled', ttl_ms)
  emit(task_key, id, 'canceled')
  return {CANCELED}
end
local started = tonumber(redis.call('HGET', task_key, 'sa')) or NOW
redis.call('HSET', task_key, 'res', result)
finish(task_key, id, 'succeeded', ttl_ms)
bump('succeeded')
observe('run', NOW - started)
emit(task_key, id, 'succeeded', {res = result})
return {OK}
