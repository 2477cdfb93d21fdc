-- claim: lease up to ARGV[2] tasks of one queue to a worker, highest priority first,
-- FIFO within a priority. Due scheduled/retrying tasks are promoted and expired leases
-- requeued first, so neither waits for a timer.
-- Honours, in order: paused, concurrency (running count), rate limit (token bucket in
-- meta), and lock_key (a task whose lock is held is parked until the lock frees).
--
-- KEYS[1..14]  the queue keys (see _lib.lua)
-- ARGV[1]  worker id
-- ARGV[2]  max tasks
-- ARGV[3]  lease length ms
-- ARGV[4]  lease token base (random; token = base .. ':' .. fence)
-- ARGV[5]  bound on promotions/requeues per call
-- ARGV[6]  random seed (backoff jitter of requeued leases)
-- ARGV[7]  ttl ms of finished task hashes
--
-- Returns {OK, retry_after_ms, {id, name, pri, payload, max, tmo, attempt, fence, token,
-- lease_expiry_ms, lock_key}, ...}; retry_after_ms > 0 when the rate limit held tasks back.
local worker, want, lease_ms, token_base = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local bound, ttl_ms = tonumber(ARGV[5]), tonumber(ARGV[7])
local worker_json = cjson.encode(worker)
promote_due(bound)
requeue_expired(bound, tonumber(ARGV[6]), ttl_ms)

local meta = redis.call('HMGET', K.meta, 'paused', 'concurrency', 'rl_rate', 'rl_burst', 'rl_tokens', 'rl_ts')
if meta[1] == '1' then return {OK, 0} end
local n = want
if meta[2] then
  n = math.min(n, tonumber(meta[2]) - redis.call('ZCARD', K.running))
end
local rate, tokens, wait_ms = tonumber(meta[3]), 0, 0
if rate then
  local burst = tonumber(meta[4])
  tokens = math.min(burst, (tonumber(meta[5]) or burst) + (NOW - (tonumber(meta[6]) or NOW)) * rate / 1000)
  n = math.min(n, math.floor(tokens))
  if n < 1 then wait_ms = math.ceil((1 - tokens) * 1000 / rate) end
end

local out, claimed, scanned, running, drained = {OK, wait_ms}, 0, 0, {}, false
local expiry = NOW + lease_ms
local expiry_s = INT[expiry]
while claimed < n and scanned < n + 64 do
  local popped = redis.call('ZPOPMIN', K.ready, n - claimed)
  drained = #popped < 2 * (n - claimed)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local id, score = popped[i], popped[i + 1]
    scanned = scanned + 1
    local task_key = K.task_prefix .. id
    local h = redis.call('HMGET', task_key, 'st', 'lk', 'run', 'fence', 'att', 'v', 'name', 'pri',
                         'payload', 'max', 'tmo', 'err')
    local free = h[1] == 'queued'
    if free and h[2] then
      local lock_key = K.lock_prefix .. h[2]
      local holder = redis.call('GET', lock_key)
      if holder and holder ~= id then
        redis.call('ZADD', K.lockwait_prefix .. h[2], score, id)
        free = false
      else
        redis.call('SET', lock_key, id, 'PX', lease_ms)
      end
    end
    if free then
      local fence, att = next_in_epoch(h[4]), (tonumber(h[5]) or 0) + 1
      local v = next_version(task_key, id, h[6])
      local token = token_base .. ':' .. fence
      redis.call('HSET', task_key, 'st', 'running', 'wid', worker, 'tok', token, 'lx', expiry_s,
                 'sa', NOW_S, 'fence', INT[fence], 'att', INT[att], 'v', INT[v])
      running[#running + 1] = expiry_s
      running[#running + 1] = id
      local run_at = tonumber(h[3]) or NOW
      observe('wait', NOW - run_at)
      tl_wait(NOW - run_at)
      push_fast(id, INT[v], 'claimed', 'running', INT[att], INT[fence], worker_json, NOW_S, nil,
                h[3] or NOW_S, h[12] or nil, nil)
      out[#out + 1] = {id, h[7], h[8], h[9], h[10], h[11], att, fence, token, expiry, h[2] or false}
      claimed = claimed + 1
    end
  end
end
if #running > 0 then redis.call('ZADD', K.running, unpack(running)) end
-- Nothing is ready any more: the signals still queued announce work already taken, and
-- would make each waiting worker claim nothing once per signal.
if drained then redis.call('DEL', K.signal) end
if rate then
  redis.call('HSET', K.meta, 'rl_tokens', tokens - claimed, 'rl_ts', NOW)
end
return out
