-- lock_release: give a handler's lock back, only if the caller still holds its lease.
--
-- KEYS[1]  the lock hash (keys.user_lock(name))
-- ARGV[1]  owner id
-- ARGV[2]  fence the owner was given (a re-acquired lock has a newer one)
--
-- Returns 1 when released, 0 when the caller was not the holder (or its lease ended)
local lk = KEYS[1]
local h = redis.call('HMGET', lk, 'owner', 'exp', 'fence')
if h[1] ~= ARGV[1] or h[3] ~= ARGV[2] or (tonumber(h[2]) or 0) <= NOW then return 0 end
redis.call('HDEL', lk, 'owner', 'exp')
return 1
