-- token_bucket: take (or give back) tokens of one bucket, e.g. the failed logins allowed
-- for one username. The bucket refills continuously up to its capacity; an empty bucket
-- refuses and says when one token will be back. (The queue-key table of _lib.lua is
-- unused here; this script has one key of its own.)
--
-- KEYS[1]  the bucket HASH: tokens, ts (ms of the last change)
-- ARGV[1]  capacity (tokens)
-- ARGV[2]  refill rate (tokens per second)
-- ARGV[3]  cost: 1 takes a token, -1 gives one back
--
-- Returns {1, 0} when allowed, {0, retry_after_ms} when the bucket is empty.
local key = KEYS[1]
local cap, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(h[1]) or cap
local ts = tonumber(h[2]) or NOW
tokens = math.min(cap, tokens + math.max(0, NOW - ts) * rate / 1000)
if cost > 0 and tokens < cost then
  return {0, math.ceil((cost - tokens) * 1000 / rate)}
end
tokens = math.min(cap, tokens - cost)
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', NOW)
-- Forget the bucket once it would be full again: an idle username costs no memory.
redis.call('PEXPIRE', key, math.ceil((cap - tokens) * 1000 / rate) + 1000)
return {1, 0}
