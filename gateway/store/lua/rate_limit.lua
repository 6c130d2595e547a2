-- GCRA rate limit: allow `limit` requests per `period_ms`, smoothly refilled (_gcra.lua).
-- KEYS[1]  rate key (theoretical arrival time in ms)
-- ARGV[1]  now in ms, ARGV[2] period in ms, ARGV[3] limit
-- Returns {allowed (1|0), retry_after_ms}
local allowed, retry_ms = gcra_hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return {allowed, retry_ms}
