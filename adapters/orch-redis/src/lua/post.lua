-- Fast receive, step 3 of 3: records what the XREADGROUP before it handed out (the entries
-- after the cursor pre.lua noted, up to the group's cursor now) as one batch with one deadline.
-- KEYS: stream, delayed, inflight, cursor
-- ARGV: group, visibility_ms
-- Returns { deadline, first ('(' .. old cursor; '' when nothing was handed out), last,
--           ms until the next delayed or in-flight deadline (-1: none), last stream id }
-- (the last two only when nothing was handed out).
local stream, delayed, inflight, cursor = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])
local before, after = redis.call('GET', cursor), nil
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
if ok then
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g - 1, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == ARGV[1] then after = f['last-delivered-id'] end
  end
end
redis.call('DEL', cursor)
if before and after and before ~= after then
  redis.call('ZADD', inflight, deadline, 'R (' .. before .. ' ' .. after)
  return {deadline, '(' .. before, after, -1, '0-0'}
end

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
return {deadline, '', '', wake, last_id}
