-- progress: the holder of a running task reports how far it is (ctx.progress). The hash
-- always keeps the newest report; a `progress` event (recorded in the history and the
-- task's row) is written only if the last one is at least ARGV[5] ms old, else the
-- report is marked unrecorded (`pu`) and written when the lease ends (_lib.lua), so a
-- chatty handler costs the record at most one row a second and the newest is never lost.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  lease token
-- ARGV[3]  fraction, 0..1, as text
-- ARGV[4]  message ('' for none)
-- ARGV[5]  least ms between two progress events of the task
--
-- Returns {OK, recorded(0|1)}, or {NOT_FOUND | LEASE_LOST | ALREADY_FINISHED | CANCELED}
local id, token, every_ms = ARGV[1], ARGV[2], tonumber(ARGV[5])
local task_key = K.task_prefix .. id
local h = redis.call('HMGET', task_key, 'st', 'tok', 'pe')
if not h[1] then return {NOT_FOUND} end
if h[1] == 'succeeded' or h[1] == 'dead' then return {ALREADY_FINISHED} end
if h[1] == 'canceled' then return {CANCELED} end
if h[1] ~= 'running' or h[2] ~= token then return {LEASE_LOST} end
redis.call('HSET', task_key, 'pf', ARGV[3], 'pm', ARGV[4], 'pat', NOW_S)
local last = tonumber(h[3])
if last and NOW - last < every_ms then
  redis.call('HSET', task_key, 'pu', 1)
  return {OK, 0}
end
emit_progress(task_key, id)
return {OK, 1}
