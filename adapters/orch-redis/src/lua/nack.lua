-- Returns a delivered message for redelivery with attempt + 1: at once into the stream, or
-- after a delay through the delayed set. A stale receipt (the entry's delivery count moved
-- on, or the entry is gone) does nothing.
-- KEYS: stream, inflight, delayed
-- ARGV: group, entry id, delivery count, delay_ms, token (32 chars), first, last (the
--       receipt's batch; '' for a reclaimed delivery)
-- Returns 1 when the message was returned, 0 for a stale receipt.
local stream, inflight, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, id = ARGV[1], ARGV[2]
local pend = redis.call('XPENDING', stream, group, id, id, 1)
if not pend[1] or tonumber(pend[1][4]) ~= tonumber(ARGV[3]) then return 0 end
local e = redis.call('XRANGE', stream, id, id)
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
if ARGV[6] ~= '' and not redis.call('XPENDING', stream, group, ARGV[6], ARGV[7], 1)[1] then
  redis.call('ZREM', inflight, 'R ' .. ARGV[6] .. ' ' .. ARGV[7])
end
if not e[1] then return 0 end
local f = {}
local flat = e[1][2]
for i = 1, #flat - 1, 2 do f[flat[i]] = flat[i + 1] end
local attempt = (tonumber(f.a) or 1) + tonumber(pend[1][4])
local delay = tonumber(ARGV[4])
if delay <= 0 then
  redis.call('XADD', stream, '*', 'p', f.p or '', 'a', attempt)
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', delayed, now + delay, ARGV[5] .. ':' .. attempt .. ':' .. (f.p or ''))
end
return 1
