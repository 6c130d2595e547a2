-- GCRA rate limit: allow `limit` requests per `period_ms`, smoothly refilled.
-- KEYS[1]  rate key (theoretical arrival time in ms)
-- ARGV[1]  now in ms, ARGV[2] period in ms, ARGV[3] limit
-- Returns {allowed (1|0), retry_after_ms}
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
return {1, 0}
