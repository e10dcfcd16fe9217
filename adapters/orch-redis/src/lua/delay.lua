-- Adds delayed messages: due = server time + delay, so instances with skewed clocks agree.
-- KEYS: delayed
-- ARGV: pairs of (delay_ms, member = <32-char token>:<attempt>:<payload>)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV - 1, 2 do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i]), ARGV[i + 1])
end
return #ARGV / 2
