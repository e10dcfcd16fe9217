-- Acks receipts of the current delivery of their message; a stale receipt acks nothing.
-- A receipt from a batch still in the in-flight set with its deadline is current (nothing of
-- that batch was delivered again); any other is current when the entry's delivery count in
-- the pending list still matches. Acked entries leave the stream: everything below the oldest
-- entry still pending is acked, so one XTRIM MINID drops it a stream node at a time; only
-- acked entries above that are deleted one by one. Batches with nothing left pending leave the
-- in-flight set.
-- KEYS: stream, inflight
-- ARGV: group, number of batches, that many (first, last, deadline, number of receipts), the
--       entry ids of each batch's receipts in that order, then (entry id, delivery count) for
--       each receipt of a message delivered again
-- Returns the number of messages acked.
local stream, inflight, group = KEYS[1], KEYS[2], ARGV[1]
local nb = tonumber(ARGV[2])

local function split(id)
  local ms, seq = string.match(id, '^%(?(%d+)-(%d+)$')
  return ms, tonumber(seq)
end

local function less(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and as < bs)
end

local function current(id, count)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return p[1] ~= nil and tonumber(p[1][4]) == count
end

local ids, live, top = {}, {}, nil
local function newest(id)
  if top == nil or less(top, id) then top = id end
end

local i = 4 * nb + 3
for b = 1, nb do
  local j = 4 * b - 1
  local s = redis.call('ZSCORE', inflight, 'R ' .. ARGV[j] .. ' ' .. ARGV[j + 1])
  live[b] = s and tonumber(s) == tonumber(ARGV[j + 2])
  local k = tonumber(ARGV[j + 3])
  if live[b] then
    for x = i, i + k - 1 do ids[#ids + 1] = ARGV[x] end
    newest(ARGV[j + 1])
  else
    -- read as new: that delivery had count 1
    for x = i, i + k - 1 do
      if current(ARGV[x], 1) then
        ids[#ids + 1] = ARGV[x]
        newest(ARGV[x])
      end
    end
  end
  i = i + k
end
for x = i, #ARGV - 1, 2 do
  if current(ARGV[x], tonumber(ARGV[x + 1])) then
    ids[#ids + 1] = ARGV[x]
    newest(ARGV[x])
  end
end
if #ids == 0 then return 0 end

local n = redis.call('XACK', stream, group, unpack(ids))
local oldest = redis.call('XPENDING', stream, group, '-', '+', 1)[1]
if oldest then
  local bound = oldest[1]
  redis.call('XTRIM', stream, 'MINID', bound)
  local rest = {}
  for _, id in ipairs(ids) do
    if not less(id, bound) then rest[#rest + 1] = id end
  end
  if #rest > 0 then redis.call('XDEL', stream, unpack(rest)) end
else
  -- nothing pending: every entry up to the newest one acked here was delivered and acked
  local ms, seq = split(top)
  redis.call('XTRIM', stream, 'MINID', ms .. '-' .. string.format('%d', seq + 1))
end

for b = 1, nb do
  if live[b] then
    local j = 4 * b - 1
    if not redis.call('XPENDING', stream, group, ARGV[j], ARGV[j + 1], 1)[1] then
      redis.call('ZREM', inflight, 'R ' .. ARGV[j] .. ' ' .. ARGV[j + 1])
    end
  end
end
return n
