-- Shared helpers, prepended to every script by chalicelib/queue/lua/__init__.py so that each
-- state-change file stays short and the retry/lock/event rules exist exactly once.
-- Helpers only touch keys derived from key-argument prefixes of the same hash tag.

local _t = redis.call('TIME')
local NOW = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
local PRIO_SPAN = 281474976710656 -- 2^48: FIFO sequences below it, priority above

-- Every script receives the same 14 queue keys first (chalicelib/queue/scripts.py builds them),
-- so this one table names them for all scripts.
local K = {ready = KEYS[1], scheduled = KEYS[2], retrying = KEYS[3], running = KEYS[4],
           dead = KEYS[5], meta = KEYS[6], stats = KEYS[7], seq = KEYS[8], events = KEYS[9],
           signal = KEYS[10], task_prefix = KEYS[11], lock_prefix = KEYS[12],
           lockwait_prefix = KEYS[13], timeline_prefix = KEYS[14]}

-- A ready-set score: priority first, then FIFO by a sequence number (`seq` when the
-- caller took a block of them, else the next one).
local function ready_score(pri, seq)
  return (9 - tonumber(pri)) * PRIO_SPAN + (seq or redis.call('INCR', K.seq))
end

-- Idle workers block on the signal list; it carries no task, so an extra push costs at
-- most one wasted claim. A worker whose claim came back short claims again only when a
-- signal comes (or its wait, bounded by the next due time, ends), so whatever makes work
-- claimable must push one: ready tasks, a retry or a scheduled task (the waiting worker
-- then recomputes when to look), a freed lock or concurrency slot. One push per worker
-- to wake, at most 64 (the list is trimmed to that: nobody listening costs no memory).
local function wake(n)
  local signals = {}
  for i = 1, math.min(n, 64) do signals[i] = 1 end
  redis.call('LPUSH', K.signal, unpack(signals))
  redis.call('LTRIM', K.signal, 0, 63)
end

-- Transitions and counters are buffered and written once when the script ends (the
-- loader appends flush()), so a script moving 100 tasks costs one XADD, not 100.
-- EVENTS holds the JSON text of the events in pieces, each event starting with a comma;
-- flush() joins them into one array.
local EVENTS, STATS, OBS = {}, {}, {}
-- Numbers handed to redis.call or joined into text are converted by a printf each time;
-- the ones a script uses again and again (NOW, small counters) are converted once.
local NOW_S = string.format('%d', NOW)
local INT = setmetatable({}, {__index = function(t, k)
  local text = string.format('%d', k)
  t[k] = text
  return text
end})

-- Record one transition. The event carries a full snapshot of the recorded fields, so
-- the Postgres recorder can apply the newest event alone and out-of-order batches from
-- several recorders can never regress a task's row. Absent fields are left out (nil),
-- never `false`: Postgres reads the events as they are (queries.sql record_events); so
-- is `cr` (cancel requested) unless true, because every byte is encoded and parsed again.
--
-- Numbers are written as exact integers: cjson keeps 14 significant digits, so a
-- far-future `run` (year 9999 is 2.5e14 ms) or an epoch-carrying fence came out as
-- `2.53402300799e+14`, which PostgreSQL refuses as a bigint.
local function json_value(val)
  if type(val) == 'number' and val == math.floor(val) and val > -1e18 and val < 1e18 then
    return string.format('%d', val)
  end
  return cjson.encode(val)
end

local function push_event(e)
  e.at = NOW
  local parts = {}
  for k, val in pairs(e) do parts[#parts + 1] = '"' .. k .. '":' .. json_value(val) end
  EVENTS[#EVENTS + 1] = ',{' .. table.concat(parts, ',') .. '}'
end

-- The two events of every task, `claimed` and `succeeded`, are written as pieces of
-- text, with no table, no cjson and no intermediate strings: building them was a large
-- share of what claim and report cost per task (bench/HISTORY.md). Numbers come as the
-- decimal strings the hash holds (or NOW_S) wherever they can, since each number→string
-- conversion is a printf. Ids are UUIDs (Postgres types them); text that is not ours
-- (worker id, error, result) goes through cjson.encode; `w` comes encoded.
local function push_fast(id, v, ev, st, att, fence, w, sa, fa, run, err, res)
  local n = #EVENTS
  EVENTS[n + 1] = ',{"id":"'
  EVENTS[n + 2] = id
  EVENTS[n + 3] = '","ev":"'
  EVENTS[n + 4] = ev
  EVENTS[n + 5] = '","st":"'
  EVENTS[n + 6] = st
  EVENTS[n + 7] = '","v":'
  EVENTS[n + 8] = v
  EVENTS[n + 9] = ',"att":'
  EVENTS[n + 10] = att
  EVENTS[n + 11] = ',"fence":'
  EVENTS[n + 12] = fence
  EVENTS[n + 13] = ',"at":'
  EVENTS[n + 14] = NOW_S
  n = n + 14
  if w then EVENTS[n + 1] = ',"w":'; EVENTS[n + 2] = w; n = n + 2 end
  if sa then EVENTS[n + 1] = ',"sa":'; EVENTS[n + 2] = sa; n = n + 2 end
  if fa then EVENTS[n + 1] = ',"fa":'; EVENTS[n + 2] = fa; n = n + 2 end
  if run then EVENTS[n + 1] = ',"run":'; EVENTS[n + 2] = run; n = n + 2 end
  if err then EVENTS[n + 1] = ',"err":'; EVENTS[n + 2] = cjson.encode(err); n = n + 2 end
  if res then EVENTS[n + 1] = ',"res":'; EVENTS[n + 2] = cjson.encode(res); n = n + 2 end
  EVENTS[n + 1] = '}'
end

-- The `created` event of a task whose row the recorder writes (durability "queue",
-- enqueue.lua): `row` is the row's JSON text (NewTask.row_json).
local function push_created(id, v, st, row)
  local n = #EVENTS
  EVENTS[n + 1] = ',{"id":"'
  EVENTS[n + 2] = id
  EVENTS[n + 3] = '","ev":"created","st":"'
  EVENTS[n + 4] = st
  EVENTS[n + 5] = '","v":'
  EVENTS[n + 6] = v
  EVENTS[n + 7] = ',"at":'
  EVENTS[n + 8] = NOW_S
  EVENTS[n + 9] = ',"row":'
  EVENTS[n + 10] = row
  EVENTS[n + 11] = '}'
end

-- Fences and transition numbers (`v`, the history's seq) carry the epoch in their high
-- bits: number = epoch * 2^32 + count. The epoch (meta `ep`, chalicelib/service/epoch.py) is
-- raised whenever Redis may have lost writes (a restart, a failover, `dtq recover`), so
-- the numbers handed out after that are above every one handed out before, whatever
-- Redis forgot. 2^32 * epoch stays an exact integer in Lua (doubles) below 2^21 epochs.
local EPOCH_SPAN = 4294967296
local EPOCH_BASE
local function epoch_base()
  if not EPOCH_BASE then
    EPOCH_BASE = (tonumber(redis.call('HGET', K.meta, 'ep')) or 0) * EPOCH_SPAN
  end
  return EPOCH_BASE
end

-- The next number of a series that must only grow (a fence or a version).
local function next_in_epoch(n)
  local nxt, base = (tonumber(n) or 0) + 1, epoch_base()
  if nxt <= base then return base + 1 end
  return nxt
end

-- Writes the snapshot event of version `v` (read from the hash).
local function emit_at(task_key, id, event, extra, v)
  local h = redis.call('HMGET', task_key, 'st', 'att', 'wid', 'sa', 'fa', 'run', 'err', 'cr', 'fence')
  local e = {id = id, v = v, ev = event, st = h[1], att = tonumber(h[2]) or 0,
             w = h[3] or nil, sa = tonumber(h[4]), fa = tonumber(h[5]), run = tonumber(h[6]),
             err = h[7] or nil, cr = h[8] == '1' or nil, fence = tonumber(h[9]) or 0}
  if extra then for k, val in pairs(extra) do e[k] = val end end
  push_event(e)
end

-- The version of a task's next transition, given its current one. A task last changed
-- in an earlier epoch first gets a `redis_restarted` event (its state as Redis kept it),
-- so a run that repeats work the record already has is explained in its history. (A task
-- created in the current epoch starts at its base, enqueue.lua, so it crosses nothing.)
-- `quiet`: the transition explains itself (`recovered`).
local function next_version(task_key, id, v, quiet)
  local current = tonumber(v) or 0
  local nxt = next_in_epoch(current)
  if nxt == current + 1 or quiet then return nxt end
  emit_at(task_key, id, 'redis_restarted', nil, nxt)
  return nxt + 1
end

-- The slower, general form: bumps the version and reads the snapshot from the hash.
local function emit(task_key, id, event, extra)
  local v = next_version(task_key, id, redis.call('HGET', task_key, 'v'), event == 'recovered')
  redis.call('HSET', task_key, 'v', string.format('%d', v))
  emit_at(task_key, id, event, extra, v)
end

local function bump(field, by)
  STATS[field] = (STATS[field] or 0) + (by or 1)
end

-- Histogram buckets (seconds) shared with chalicelib/api/metrics.py; counted per script
-- call and written by flush(), so a task costs a bucket search, not three hash fields.
local BUCKETS = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
local BUCKETS_MS = {}
for b = 1, #BUCKETS do BUCKETS_MS[b] = BUCKETS[b] * 1000 end
local function observe(name, ms)
  if ms < 0 then ms = 0 end
  local i = #BUCKETS_MS + 1
  for b = 1, #BUCKETS_MS do
    if ms <= BUCKETS_MS[b] then i = b; break end
  end
  local o = OBS[name]
  if not o then
    o = {n = 0, sum = 0, b = {}}
    OBS[name] = o
  end
  o.b[i] = (o.b[i] or 0) + 1
  o.n = o.n + 1
  o.sum = o.sum + ms
end

-- The timeline (GET /stats/timeline): one hash per queue and minute of the server clock,
-- `<timeline_prefix><unix minute>`, fields `enq`, `ok`, `fail` (counts) and `w<i>`: the
-- wait (due -> claimed) histogram, bucket 0 for 0 ms, bucket i >= 1 for
-- [2^((i-1)/4), 2^(i/4)) ms, so a percentile read from it is within 19% (bucket bounds
-- and percentiles: chalicelib/queue/timeline.py). Counted per script call like STATS and
-- written by flush(): one HINCRBY per field touched, and a PEXPIRE when one was new.
-- Kept a day and a minute, the longest window the endpoint serves.
local TL, TLW = {}, {}
local TL_TTL_MS = 1441 * 60000
local TL_SCALE = 4 / math.log(2)
local function tl_bump(field, by)
  TL[field] = (TL[field] or 0) + (by or 1)
end
local function tl_wait(ms)
  local i = 0
  if ms >= 1 then i = math.floor(math.log(ms) * TL_SCALE) + 1 end
  TLW[i] = (TLW[i] or 0) + 1
end

-- The key gets its expiry from whichever call creates it: a call that finds every field
-- it counts already there (HINCRBY returns more than it added) skips the PEXPIRE.
local function flush_timeline()
  if next(TL) == nil and next(TLW) == nil then return end
  local key = K.timeline_prefix .. string.format('%d', math.floor(NOW / 60000))
  local fresh = false
  for field, n in pairs(TL) do
    if redis.call('HINCRBY', key, field, n) == n then fresh = true end
  end
  for i, n in pairs(TLW) do
    if redis.call('HINCRBY', key, 'w' .. i, n) == n then fresh = true end
  end
  if fresh then redis.call('PEXPIRE', key, TL_TTL_MS) end
end

local function flush()
  flush_timeline()
  for name, o in pairs(OBS) do
    for i, n in pairs(o.b) do bump(name .. ':b' .. i, n) end
    bump(name .. ':count', o.n)
    redis.call('HINCRBYFLOAT', K.stats, name .. ':sum', o.sum / 1000)
  end
  for field, n in pairs(STATS) do redis.call('HINCRBY', K.stats, field, n) end
  if #EVENTS > 0 then
    redis.call('XADD', K.events, '*', 'd', '[' .. string.sub(table.concat(EVENTS), 2) .. ']')
  end
end

-- Free the task's lock_key (only if this task holds it) and hand the lock's turn to the
-- oldest parked task, which goes back to the ready set with its original score.
local function release_lock(task_key, id)
  local lk = redis.call('HGET', task_key, 'lk')
  if not lk then return end
  local lock_key = K.lock_prefix .. lk
  if redis.call('GET', lock_key) == id then redis.call('DEL', lock_key) end
  if redis.call('EXISTS', lock_key) == 0 then
    local waiter = redis.call('ZPOPMIN', K.lockwait_prefix .. lk)
    if waiter[1] then
      redis.call('ZADD', K.ready, waiter[2], waiter[1])
      wake(1)
    end
  end
end

-- A task id sits in at most one of these sets; removing from all is cheaper than asking.
local function unlist(id)
  for _, key in ipairs({K.ready, K.scheduled, K.retrying, K.running}) do
    redis.call('ZREM', key, id)
  end
end

-- Backoff of docs/api.md: base * factor^(attempt-1), capped at max, optionally full jitter.
local function backoff_ms(bo, attempt, rand)
  local base, factor, cap, jitter = 1.0, 2.0, 3600.0, 1
  if bo then
    local parts = {}
    for p in string.gmatch(bo, '[^,]+') do parts[#parts + 1] = p end
    base, factor, cap, jitter = tonumber(parts[1]), tonumber(parts[2]), tonumber(parts[3]), tonumber(parts[4])
  end
  local d = base * (factor ^ (attempt - 1))
  if d > cap then d = cap end
  if jitter == 1 then d = d * rand end
  return math.floor(d * 1000)
end

-- Progress (progress.lua, a handler's ctx.progress): the hash keeps the newest report
-- (`pf` fraction, `pm` message, `pat` when), always. A `progress` event is a transition of
-- its own (it takes a version: the history's seq) written at most once a second per task
-- (`pe`: when the last one was); a report held back is marked `pu` and written when the
-- lease ends (retire_token, report.lua's success), so the record ends with the newest.
local function emit_progress(task_key, id)
  local p = redis.call('HMGET', task_key, 'pf', 'pm', 'pat')
  redis.call('HSET', task_key, 'pe', NOW_S)
  redis.call('HDEL', task_key, 'pu')
  emit(task_key, id, 'progress', {pf = tonumber(p[1]), pm = p[2] or '', pat = tonumber(p[3])})
end

-- The lease ends; its token is kept so that a late outcome from it can still be matched.
-- A progress report still held back by the throttle is written first.
local function retire_token(task_key, id)
  local h = redis.call('HMGET', task_key, 'tok', 'ptok', 'pu')
  if h[3] then emit_progress(task_key, id) end
  if h[1] then
    redis.call('HSET', task_key, 'ptok', h[2] and (h[2] .. ' ' .. h[1]) or h[1])
    redis.call('HDEL', task_key, 'tok', 'lx')
  end
end

-- A finished task: terminal status, lock released, payload kept only if replayable.
local function finish(task_key, id, status, ttl_ms)
  retire_token(task_key, id)
  redis.call('HSET', task_key, 'st', status, 'fa', NOW)
  release_lock(task_key, id)
  if status == 'succeeded' then redis.call('HDEL', task_key, 'payload') end
  if status == 'dead' then
    redis.call('ZADD', K.dead, NOW, id)
  else
    redis.call('PEXPIRE', task_key, ttl_ms)
  end
end

-- One failed attempt (raised, timed out or lease lost): retry after backoff or die.
-- Returns the new status.
local function fail_attempt(task_key, id, event, err, rand, delay_override, ttl_ms)
  local h = redis.call('HMGET', task_key, 'att', 'max', 'bo', 'cr')
  local att, maxa = tonumber(h[1]) or 0, tonumber(h[2]) or 1
  retire_token(task_key, id)
  redis.call('HSET', task_key, 'err', err)
  redis.call('ZREM', K.running, id)
  bump('failures')
  tl_bump('fail')
  emit(task_key, id, event)
  if h[4] == '1' then
    finish(task_key, id, 'canceled', ttl_ms)
    emit(task_key, id, 'canceled')
    return 'canceled'
  end
  if att >= maxa then
    finish(task_key, id, 'dead', ttl_ms)
    bump('dead')
    emit(task_key, id, 'dead')
    return 'dead'
  end
  local delay = delay_override
  if delay < 0 then delay = backoff_ms(h[3], att, rand) end
  release_lock(task_key, id)
  redis.call('HSET', task_key, 'st', 'retrying', 'run', NOW + delay)
  redis.call('ZADD', K.retrying, NOW + delay, id)
  wake(1)
  bump('retries')
  emit(task_key, id, 'retrying')
  return 'retrying'
end

-- Move due scheduled and retrying tasks to the ready set (bounded per call).
local function promote_due(limit)
  local moved = 0
  for _, zset in ipairs({K.scheduled, K.retrying}) do
    local due = redis.call('ZRANGEBYSCORE', zset, '-inf', NOW, 'LIMIT', 0, limit)
    for _, id in ipairs(due) do
      local task_key = K.task_prefix .. id
      redis.call('ZREM', zset, id)
      local pri = redis.call('HGET', task_key, 'pri')
      if pri then
        redis.call('ZADD', K.ready, ready_score(pri), id)
        redis.call('HSET', task_key, 'st', 'queued')
        emit(task_key, id, 'queued')
        moved = moved + 1
      end
    end
  end
  if moved > 0 then wake(moved) end
  return moved
end

-- Leases past their deadline count as failed attempts (or end canceled tasks).
local function requeue_expired(limit, seed, ttl_ms)
  local expired = redis.call('ZRANGEBYSCORE', K.running, '-inf', NOW, 'LIMIT', 0, limit)
  if #expired > 0 then math.randomseed(seed) end
  for _, id in ipairs(expired) do
    local task_key = K.task_prefix .. id
    if redis.call('EXISTS', task_key) == 1 then
      fail_attempt(task_key, id, 'lease_expired', 'lease expired', math.random(), -1, ttl_ms)
    else
      redis.call('ZREM', K.running, id)
    end
  end
  return #expired
end

-- Codes returned first by every script; chalicelib/queue/scripts.py maps them to exceptions.
local OK, NOT_FOUND, LEASE_LOST, ALREADY_FINISHED, CANCELED, INVALID_STATE, EXISTS, CANCEL_PENDING,
  UNREGISTERED = 0, 1, 2, 3, 4, 5, 6, 7, 8

-- Decide whether an outcome reported with `token` may be recorded, from the task's
-- fields {st, tok, ptok} (already read by the caller).
-- Returns OK for the current lease, and also (with late_ok) for an earlier lease of the
-- same task when nobody has finished it since: a late result is not thrown away.
-- Otherwise the refusal code, after counting the duplicate and noting it in the history.
local function check_outcome(task_key, id, h, token, worker, late_ok)
  local st = h[1]
  if not st then return NOT_FOUND end
  local code
  if st == 'succeeded' or st == 'dead' then
    code = ALREADY_FINISHED
  elseif st == 'canceled' then
    code = CANCELED
  elseif st == 'running' and h[2] == token then
    return OK
  elseif late_ok and h[3] and string.find(' ' .. h[3] .. ' ', ' ' .. token .. ' ', 1, true) then
    return OK
  else
    code = LEASE_LOST
  end
  bump('duplicates')
  -- Only a real duplicate (the task already ended) enters the history; a foreign or stale
  -- token must leave the task exactly as it was.
  if code ~= LEASE_LOST then emit(task_key, id, 'duplicate_result', {by = worker, reason = code}) end
  return code
end
