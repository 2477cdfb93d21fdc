-- lock_extend: push the deadline of a handler's lock, only while the caller holds it.
-- An expired lease is not revived: another contender may already have acted on it.
--
-- KEYS[1]  the lock hash (keys.user_lock(name))
-- ARGV[1]  owner id
-- ARGV[2]  fence the owner was given
-- ARGV[3]  new lease length ms (from now, server clock)
-- ARGV[4]  idle ttl ms of the hash itself
--
-- Returns {1, new deadline ms} or {0, 0} when the caller no longer holds the lock
local lk, ttl = KEYS[1], tonumber(ARGV[3])
local h = redis.call('HMGET', lk, 'owner', 'exp', 'fence')
if h[1] ~= ARGV[1] or h[3] ~= ARGV[2] or (tonumber(h[2]) or 0) <= NOW then return {0, 0} end
redis.call('HSET', lk, 'exp', NOW + ttl)
redis.call('PEXPIRE', lk, math.max(tonumber(ARGV[4]), ttl))
return {1, NOW + ttl}
