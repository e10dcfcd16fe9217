-- Moves entries a fast receive found unusable (malformed, or past max_deliveries) to the
-- dead-letter stream with their original fields; entries no longer pending are left alone.
-- KEYS: stream, dead
-- ARGV: group, then pairs of (entry id, reason)
-- Returns the number moved.
local stream, dead, group = KEYS[1], KEYS[2], ARGV[1]
local n = 0
for i = 2, #ARGV - 1, 2 do
  local id = ARGV[i]
  if redis.call('XPENDING', stream, group, id, id, 1)[1] then
    local args = {'XADD', dead, '*', 'reason', ARGV[i + 1], 'from', id}
    local e = redis.call('XRANGE', stream, id, id)[1]
    if e then
      for _, v in ipairs(e[2]) do args[#args + 1] = v end
    end
    redis.call(unpack(args))
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    n = n + 1
  end
end
return n
