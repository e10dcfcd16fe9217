-- Acks receipts whose deadline still matches the in-flight set (a stale receipt acks nothing).
-- KEYS: stream, inflight
-- ARGV: group, then pairs of (entry id, deadline)
-- Returns the number of messages removed.
local ids, ask = {}, {'ZMSCORE', KEYS[2]}
for i = 2, #ARGV - 1, 2 do ask[#ask + 1] = ARGV[i] end
if #ask == 2 then return 0 end
local scores = redis.call(unpack(ask))
for j = 1, #ask - 2 do
  local s = scores[j]
  if s and tonumber(s) == tonumber(ARGV[2 * j + 1]) then ids[#ids + 1] = ARGV[2 * j] end
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
  redis.call('ZREM', KEYS[2], unpack(ids))
end
return #ids
