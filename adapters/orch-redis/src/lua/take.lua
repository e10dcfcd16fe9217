-- Takes up to ARGV[3] messages for one receive, atomically:
--   1. delayed messages that are due move from the delayed set into the stream;
--   2. in-flight messages past their visibility deadline are claimed again (XCLAIM);
--   3. new entries are read with XREADGROUP;
-- each taken message gets a fresh deadline in the in-flight set, and a message past
-- max_deliveries, or malformed, goes to the dead-letter stream instead.
-- KEYS: stream, delayed, inflight, dead
-- ARGV: group, consumer, max, visibility_ms, max_deliveries, promote_limit
-- Returns { {id, deadline, attempt, payload}..., {id, reason}... (dead-lettered),
--           ms until the next delayed or in-flight deadline (-1: none), last stream id }
-- (the last two only when nothing was taken).
local stream, delayed, inflight, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer = ARGV[1], ARGV[2]
local max, vis, maxdel, plimit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local out, deadl, zadd = {}, {}, {'ZADD', inflight}

local function fields(flat)
  local f = {}
  if type(flat) ~= 'table' then return f end
  for i = 1, #flat - 1, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

local function valid_attempt(a)
  local n = tonumber(a)
  return n ~= nil and n >= 1 and n == math.floor(n) and string.match(a, '^%d+$') ~= nil
end

local function remove(id)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('ZREM', inflight, id)
end

local function bury(id, flat, reason)
  local args = {'XADD', dead, '*', 'reason', reason, 'from', id}
  if type(flat) == 'table' then
    for i = 1, #flat do args[#args + 1] = flat[i] end
  end
  redis.call(unpack(args))
  remove(id)
  deadl[#deadl + 1] = {id, reason}
end

-- deadlines are written with one ZADD at the end
local function deliver(id, f, attempt, deadline)
  zadd[#zadd + 1] = deadline
  zadd[#zadd + 1] = id
  out[#out + 1] = {id, deadline, attempt, f.p}
end

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

-- 2. in-flight messages whose visibility deadline passed
local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'WITHSCORES', 'LIMIT', 0, max)
for i = 1, #expired, 2 do
  local id, old = expired[i], tonumber(expired[i + 1])
  local claimed = redis.call('XCLAIM', stream, group, consumer, 0, id)
  local e = claimed[1]
  if type(e) ~= 'table' or type(e[2]) ~= 'table' then
    -- acked (or deleted) meanwhile: nothing to redeliver
    redis.call('ZREM', inflight, id)
    redis.call('XACK', stream, group, id)
  else
    local f = fields(e[2])
    local pend = redis.call('XPENDING', stream, group, id, id, 1)
    local n = 2
    if pend[1] then n = tonumber(pend[1][4]) end
    local attempt = tonumber(f.a) + n - 1
    if attempt > maxdel then
      bury(id, e[2], 'max_deliveries')
    else
      deliver(id, f, attempt, math.max(now + vis, old + 1))
    end
  end
end

-- 3. new entries
if #out < max then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #out, 'STREAMS', stream, '>')
  if type(r) == 'table' and r[1] then
    for _, e in ipairs(r[1][2]) do
      local id, flat = e[1], e[2]
      local f = fields(flat)
      if type(f.p) ~= 'string' or type(f.a) ~= 'string' or not valid_attempt(f.a) then
        bury(id, flat, 'malformed: an orch entry has fields p (payload) and a (attempt >= 1)')
      elseif tonumber(f.a) > maxdel then
        bury(id, flat, 'max_deliveries')
      else
        deliver(id, f, tonumber(f.a), now + vis)
      end
    end
  end
end

if #zadd > 2 then redis.call(unpack(zadd)) end
-- a receiver that got messages returns at once; one that got none needs to know when to look again
if #out > 0 then return {out, deadl, -1, '0-0'} end
local wake = -1
local nd = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if nd[2] then wake = math.max(0, tonumber(nd[2]) - now) end
local ni = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
if ni[2] then
  local w = math.max(0, tonumber(ni[2]) - now)
  if wake < 0 or w < wake then wake = w end
end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local last_id = '0-0'
if last[1] then last_id = last[1][1] end
return {out, deadl, wake, last_id}
