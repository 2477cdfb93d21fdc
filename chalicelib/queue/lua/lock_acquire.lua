-- lock_acquire: take a handler's distributed lock (a lease, not a mutex) if it is free,
-- expired, or already ours. Every successful acquisition gets a fencing token that grows
-- for the lifetime of the key, so a resource can refuse writes from an older holder.
-- The hash is never given a short TTL (an expired lease is read from `exp`): deleting it
-- would reset the fence counter.
--
-- KEYS[1]  the lock hash (keys.user_lock(name)): owner, exp (server ms), fence
-- ARGV[1]  owner id (unique per holder)
-- ARGV[2]  lease length ms
-- ARGV[3]  idle ttl ms of the hash itself (bounds memory of abandoned lock names)
-- ARGV[4]  the current epoch (chalicelib/service/epoch.py; '' or absent: 0): a fence handed out
--          after Redis may have lost writes starts above every fence of earlier epochs
--
-- Returns {1, fence} when held by ARGV[1] now, or {0, ms until the current lease ends}
local lk, owner, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local h = redis.call('HMGET', lk, 'owner', 'exp', 'fence')
local exp = tonumber(h[2]) or 0
if h[1] and h[1] ~= owner and exp > NOW then
  return {0, exp - NOW}
end
local fence = tonumber(h[3]) or 0
if h[1] ~= owner or exp <= NOW then
  local base = (tonumber(ARGV[4]) or 0) * 4294967296
  fence = fence + 1
  if fence <= base then fence = base + 1 end
  redis.call('HSET', lk, 'fence', string.format('%d', fence))
end
redis.call('HSET', lk, 'owner', owner, 'exp', NOW + ttl)
redis.call('PEXPIRE', lk, math.max(tonumber(ARGV[3]), ttl))
return {1, fence}
