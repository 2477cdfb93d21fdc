-- replay: send a dead or canceled task back to the queue with its attempts reset.
-- The fence keeps growing, so a holder from before the replay stays fenced off.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
--
-- Returns {OK} or {NOT_FOUND | INVALID_STATE}
local id = ARGV[1]
local task_key = K.task_prefix .. id
local st = redis.call('HGET', task_key, 'st')
if not st then return {NOT_FOUND} end
if st ~= 'dead' and st ~= 'canceled' then return {INVALID_STATE} end
if not redis.call('HGET', task_key, 'payload') then return {NOT_FOUND} end
redis.call('PERSIST', task_key)
redis.call('ZREM', K.dead, id)
redis.call('HSET', task_key, 'st', 'queued', 'att', 0, 'run', NOW)
redis.call('HDEL', task_key, 'cr', 'fa', 'sa', 'res', 'wid')
emit(task_key, id, 'replayed')
redis.call('ZADD', K.ready, ready_score(redis.call('HGET', task_key, 'pri')), id)
emit(task_key, id, 'queued')
wake(1)
return {OK}
