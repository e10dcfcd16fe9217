-- Fast receive, step 1 of 3 (one MULTI with XREADGROUP and post.lua): moves due delayed
-- messages into the stream, notes where the group's cursor stands, and says whether a batch's
-- deadline has passed (the caller then runs take.lua, which claims such messages again).
-- KEYS: stream, delayed, inflight, cursor, dead
-- ARGV: group, promote_limit
-- Returns { 1 if a batch's deadline passed else 0, {{'delayed', reason}, ...} dead-lettered }
local stream, delayed, inflight, cursor, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadl = {}

-- due delayed messages join the stream; a member is <32-char token>:<attempt>:<payload>
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local sep = string.find(m, ':', 34, true)
  local a = sep and string.sub(m, 34, sep - 1)
  if a and string.match(a, '^%d+$') and tonumber(a) >= 1 then
    redis.call('XADD', stream, '*', 'p', string.sub(m, sep + 1), 'a', a)
  else
    redis.call('XADD', dead, '*', 'reason', 'malformed delayed entry', 'raw', m)
    deadl[#deadl + 1] = {'delayed', 'malformed delayed entry'}
  end
  redis.call('ZREM', delayed, m)
end

-- the group's cursor: the entries XREADGROUP hands out next come after it
redis.call('DEL', cursor)
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
if ok then
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g - 1, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == ARGV[1] then redis.call('SET', cursor, f['last-delivered-id']) end
  end
end

local expired = 0
if redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 1)[1] then expired = 1 end
return {expired, deadl}
