-- configure_queue: change a queue's settings atomically (PATCH /queues/{name}).
-- Changing the rate limit resets its token bucket to a full burst.
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV  field/value pairs among paused (0|1), concurrency, rl_rate, rl_burst;
--       an empty value removes the field (no cap)
--
-- Returns {OK}
for i = 1, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if value == '' then
    redis.call('HDEL', K.meta, field)
  else
    redis.call('HSET', K.meta, field, value)
  end
  if field == 'rl_rate' or field == 'rl_burst' then
    redis.call('HDEL', K.meta, 'rl_tokens', 'rl_ts')
  end
end
local waiting = redis.call('ZCARD', K.ready)
if waiting > 0 then wake(waiting) end
return {OK}
