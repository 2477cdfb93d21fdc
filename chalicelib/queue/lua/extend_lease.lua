-- extend_lease: push the lease deadline of a running task (server clock) and tell the
-- worker whether it was canceled; a cancel request ends the task `canceled` here.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  lease token
-- ARGV[3]  extension ms
-- ARGV[4]  ttl ms of finished task hashes
--
-- Returns {OK, lease_expires_ms, cancel(0|1)}, or {NOT_FOUND | LEASE_LOST |
-- ALREADY_FINISHED | CANCELED}
local id, token, extend_ms, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local task_key = K.task_prefix .. id
local h = redis.call('HMGET', task_key, 'st', 'tok', 'cr', 'lk')
if not h[1] then return {NOT_FOUND} end
if h[1] == 'succeeded' or h[1] == 'dead' then return {ALREADY_FINISHED} end
if h[1] == 'canceled' then return {CANCELED} end
if h[1] ~= 'running' or h[2] ~= token then return {LEASE_LOST} end
if h[3] == '1' then
  redis.call('ZREM', K.running, id)
  finish(task_key, id, 'canceled', ttl_ms)
  emit(task_key, id, 'canceled')
  return {OK, NOW, 1}
end
local expiry = NOW + extend_ms
redis.call('HSET', task_key, 'lx', expiry)
redis.call('ZADD', K.running, expiry, id)
if h[4] then redis.call('PEXPIRE', K.lock_prefix .. h[4], extend_ms) end
return {OK, expiry, 0}
