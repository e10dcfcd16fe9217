-- Takes up to ARGV[3] messages for one receive, atomically:
--   1. delayed messages that are due move from the delayed set into the stream;
--   2. batches past their visibility deadline give back their unacked entries (XCLAIM);
--   3. new entries are read with XREADGROUP.
-- Everything one call takes shares one deadline, kept as one member of the in-flight set per
-- batch: 'R <first> <last>' for entries read by XREADGROUP (a contiguous id range: the group
-- hands out entries in id order), 'L <id> <id> ...' for reclaimed ones. A message past
-- max_deliveries, or malformed, goes to the dead-letter stream instead.
-- KEYS: stream, delayed, inflight, dead
-- ARGV: group, consumer, max, visibility_ms, max_deliveries, promote_limit
-- Returns { deadline, first, last (the 'R' batch, '' if none),
--           {id, attempt, payload, ...} read as new (flat, delivery count 1),
--           {id, delivery count, attempt, payload, ...} reclaimed (flat),
--           {{id, reason}, ...} dead-lettered,
--           ms until the next delayed or in-flight deadline (-1: none), last stream id }
-- (the last two only when nothing was taken).
local stream, delayed, inflight, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer = ARGV[1], ARGV[2]
local max, vis, maxdel, plimit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + vis

local fresh, again, deadl, reclaimed = {}, {}, {}, {}
local taken = 0

local function fields(flat)
  local f = {}
  if type(flat) ~= 'table' then return f end
  for i = 1, #flat - 1, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

local function valid_attempt(a)
  return type(a) == 'string' and string.match(a, '^%d+$') ~= nil and tonumber(a) >= 1
end

local function bury(id, flat, reason)
  local args = {'XADD', dead, '*', 'reason', reason, 'from', id}
  if type(flat) == 'table' then
    for i = 1, #flat do args[#args + 1] = flat[i] end
  end
  redis.call(unpack(args))
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  deadl[#deadl + 1] = {id, reason}
end

local MALFORMED = 'malformed: an orch entry has fields p (payload) and a (attempt >= 1)'

-- 1. due delayed messages join the stream; a member is <32-char token>:<attempt>:<payload>
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, plimit)
for _, m in ipairs(due) do
  local sep = string.find(m, ':', 34, true)
  if sep and valid_attempt(string.sub(m, 34, sep - 1)) then
    redis.call('XADD', stream, '*', 'p', string.sub(m, sep + 1), 'a', string.sub(m, 34, sep - 1))
  else
    redis.call('XADD', dead, '*', 'reason', 'malformed delayed entry', 'raw', m)
    deadl[#deadl + 1] = {'delayed', 'malformed delayed entry'}
  end
  redis.call('ZREM', delayed, m)
end

-- 2. batches whose deadline passed: their entries still pending are delivered again
local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 16)
for i = 1, #expired, 2 do
  local room = max - taken
  if room <= 0 then break end
  local member, score = expired[i], expired[i + 1]
  local w = {}
  for x in string.gmatch(member, '%S+') do w[#w + 1] = x end
  local pend, rest = {}, nil
  if w[1] == 'R' and w[3] then
    local p = redis.call('XPENDING', stream, group, w[2], w[3], room)
    for _, e in ipairs(p) do pend[#pend + 1] = {e[1], tonumber(e[4])} end
    -- the rest of the range waits for the next call, with the same (passed) deadline
    if #p == room then rest = 'R (' .. p[#p][1] .. ' ' .. w[3] end
  else
    -- 'L <id>...'; a bare id is a per-message member left by an older version of orch
    local left, from = {}, 2
    if w[1] ~= 'L' then from = 1 end
    for j = from, #w do
      if #pend < room then
        local p = redis.call('XPENDING', stream, group, w[j], w[j], 1)
        if p[1] then pend[#pend + 1] = {p[1][1], tonumber(p[1][4])} end
      else
        left[#left + 1] = w[j]
      end
    end
    if #left > 0 then rest = 'L ' .. table.concat(left, ' ') end
  end
  redis.call('ZREM', inflight, member)
  if rest then redis.call('ZADD', inflight, score, rest) end
  if #pend > 0 then
    local claim = {'XCLAIM', stream, group, consumer, 0}
    for _, e in ipairs(pend) do claim[#claim + 1] = e[1] end
    local got = {}
    for _, e in ipairs(redis.call(unpack(claim))) do
      if type(e) == 'table' and type(e[2]) == 'table' then got[e[1]] = e[2] end
    end
    for _, e in ipairs(pend) do
      local id, count = e[1], e[2] + 1
      local flat = got[id]
      if not flat then
        -- deleted meanwhile: nothing to deliver
        redis.call('XACK', stream, group, id)
      else
        local f = fields(flat)
        if type(f.p) ~= 'string' or not valid_attempt(f.a) then
          bury(id, flat, MALFORMED)
        elseif tonumber(f.a) + count - 1 > maxdel then
          bury(id, flat, 'max_deliveries')
        else
          local n = #again
          again[n + 1], again[n + 2], again[n + 3], again[n + 4] = id, count, tonumber(f.a) + count - 1, f.p
          reclaimed[#reclaimed + 1] = id
          taken = taken + 1
        end
      end
    end
  end
end
if #reclaimed > 0 then redis.call('ZADD', inflight, deadline, 'L ' .. table.concat(reclaimed, ' ')) end

-- 3. new entries
local first, last = '', ''
if taken < max then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - taken, 'STREAMS', stream, '>')
  if type(r) == 'table' and r[1] then
    for _, e in ipairs(r[1][2]) do
      local id, flat = e[1], e[2]
      local p, a
      if type(flat) == 'table' and #flat == 4 and flat[1] == 'p' and flat[3] == 'a' then
        p, a = flat[2], flat[4]
      else
        local f = fields(flat)
        p, a = f.p, f.a
      end
      if type(p) ~= 'string' or not valid_attempt(a) then
        bury(id, flat, MALFORMED)
      elseif tonumber(a) > maxdel then
        bury(id, flat, 'max_deliveries')
      else
        local n = #fresh
        fresh[n + 1], fresh[n + 2], fresh[n + 3] = id, a, p
        taken = taken + 1
        if first == '' then first = id end
        last = id
      end
    end
  end
end
if first ~= '' then redis.call('ZADD', inflight, deadline, 'R ' .. first .. ' ' .. last) end

-- a receiver that got messages returns at once; one that got none needs to know when to look again
if taken > 0 then return {deadline, first, last, fresh, again, deadl, -1, '0-0'} end
local wake = -1
local nd = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if nd[2] then wake = math.max(0, tonumber(nd[2]) - now) end
local ni = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
if ni[2] then
  local w = math.max(0, tonumber(ni[2]) - now)
  if wake < 0 or w < wake then wake = w end
end
local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local last_id = '0-0'
if top[1] then last_id = top[1][1] end
return {deadline, first, last, fresh, again, deadl, wake, last_id}
