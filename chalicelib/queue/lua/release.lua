-- release: a worker gives a task back (graceful shutdown). Not a failure: the attempt
-- is not counted and the task returns to the front of its priority.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  lease token
--
-- Returns {OK} or {NOT_FOUND | LEASE_LOST | ALREADY_FINISHED | CANCELED}
local id, token = ARGV[1], ARGV[2]
local task_key = K.task_prefix .. id
local h = redis.call('HMGET', task_key, 'st', 'tok', 'pri', 'att')
if not h[1] then return {NOT_FOUND} end
if h[1] == 'succeeded' or h[1] == 'dead' then return {ALREADY_FINISHED} end
if h[1] == 'canceled' then return {CANCELED} end
if h[1] ~= 'running' or h[2] ~= token then return {LEASE_LOST} end
redis.call('ZREM', K.running, id)
retire_token(task_key, id)
release_lock(task_key, id)
redis.call('HSET', task_key, 'st', 'queued', 'att', math.max(0, tonumber(h[4]) - 1), 'run', NOW)
emit(task_key, id, 'released')
-- Score = priority band with sequence 0: ahead of everything else of its priority.
redis.call('ZADD', K.ready, (9 - tonumber(h[3])) * PRIO_SPAN, id)
wake(1)
return {OK}
