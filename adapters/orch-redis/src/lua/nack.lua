-- Returns a delivered message for redelivery with attempt + 1: at once into the stream, or
-- after a delay through the delayed set. A stale receipt does nothing.
-- KEYS: stream, inflight, delayed
-- ARGV: group, entry id, deadline, delay_ms, token (32 chars)
-- Returns 1 when the message was returned, 0 for a stale receipt.
local stream, inflight, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, id = ARGV[1], ARGV[2]
local s = redis.call('ZSCORE', inflight, id)
if not s or tonumber(s) ~= tonumber(ARGV[3]) then return 0 end
local e = redis.call('XRANGE', stream, id, id)
local pend = redis.call('XPENDING', stream, group, id, id, 1)
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
redis.call('ZREM', inflight, id)
if not e[1] then return 0 end
local f = {}
local flat = e[1][2]
for i = 1, #flat - 1, 2 do f[flat[i]] = flat[i + 1] end
local n = 1
if pend[1] then n = tonumber(pend[1][4]) end
local attempt = (tonumber(f.a) or 1) + n
local delay = tonumber(ARGV[4])
if delay <= 0 then
  redis.call('XADD', stream, '*', 'p', f.p or '', 'a', attempt)
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', delayed, now + delay, ARGV[5] .. ':' .. attempt .. ':' .. (f.p or ''))
end
return 1
