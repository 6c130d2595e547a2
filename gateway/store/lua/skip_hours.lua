-- Mark every hour up to ARGV[1] as metered without burning it (a project resumed after a
-- suspension owes nothing for the hours it was suspended). The marker never moves back.
-- KEYS: metered hour marker   ARGV: hour (Unix hours)
-- Returns the marker afterwards.
local hour = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if hour > last then
  redis.call('SET', KEYS[1], hour)
  return hour
end
return last
