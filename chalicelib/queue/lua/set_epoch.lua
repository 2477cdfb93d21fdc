-- set_epoch: raise the epoch copy held in one hash (a queue's meta, or the deployment's
-- epoch hash); never lowers it, so processes that learn the epoch at different moments
-- can all write what they know.
--
-- KEYS[1]  the hash (field `ep`)
-- ARGV[1]  the epoch
-- ARGV[2]  optional: the run_id of the server process just checked against the record
--          (field `run`: a process that meets this same server process later needs no
--          check; after a restart the server's run_id no longer matches)
--
-- Returns {OK, the epoch the hash holds now}
local ep = tonumber(ARGV[1])
local held = tonumber(redis.call('HGET', KEYS[1], 'ep')) or -1
if held < ep then
  redis.call('HSET', KEYS[1], 'ep', ARGV[1])
  held = ep
end
if ARGV[2] then redis.call('HSET', KEYS[1], 'run', ARGV[2]) end
return {OK, held}
