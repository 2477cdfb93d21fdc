-- fail: record a failed attempt (the handler raised or timed out): retry after the
-- task's backoff, or dead-letter it when its attempts are spent. Only the current lease
-- may fail a task: an expired lease already counted as a failed attempt.
--
-- KEYS[1..13]  the queue keys (see _lib.lua)
-- ARGV[1]  task id
-- ARGV[2]  lease token
-- ARGV[3]  error text
-- ARGV[4]  random number in [0, 1) for full jitter
-- ARGV[5]  retry delay ms chosen by the handler, or -1 for the task's backoff
-- ARGV[6]  ttl ms of finished task hashes
-- ARGV[7]  reporting worker id
--
-- Returns {OK, new_status} or {NOT_FOUND | LEASE_LOST | ALREADY_FINISHED | CANCELED}
local id, token, err = ARGV[1], ARGV[2], ARGV[3]
local task_key = K.task_prefix .. id
local code = check_outcome(task_key, id, token, ARGV[7], false)
if code ~= OK then return {code} end
local started = tonumber(redis.call('HGET', task_key, 'sa')) or NOW
observe('run', NOW - started)
return {OK, fail_attempt(task_key, id, 'failed', err, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))}
