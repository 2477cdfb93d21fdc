-- reap: the periodic sweep (scheduled function and workers): promote due scheduled and
-- retrying tasks, and turn expired leases into failed attempts. claim.lua does the same
-- for its own queue, so an idle queue is the only one that waits for this sweep.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  bound per call
-- ARGV[2]  random seed (backoff jitter)
-- ARGV[3]  ttl ms of finished task hashes
--
-- Returns {OK, promoted, expired}
local bound = tonumber(ARGV[1])
local promoted = promote_due(bound)
local expired = requeue_expired(bound, tonumber(ARGV[2]), tonumber(ARGV[3]))
return {OK, promoted, expired}
