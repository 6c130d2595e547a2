-- An authenticated request's one round trip: count it against the rate limit (_gcra.lua) and
-- consume its nonce. A rate-limited request does not consume the nonce (the agent may retry
-- with it).
-- KEYS[1] rate key, KEYS[2] nonce key
-- ARGV[1] now ms, ARGV[2] period ms, ARGV[3] limit, ARGV[4] nonce ttl seconds
-- Returns {allowed (1|0), retry_after_ms, nonce_fresh (1|0)}
local allowed, retry_ms = gcra_hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
if allowed == 0 then
  return {0, retry_ms, 0}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  return {1, 0, 1}
end
return {1, 0, 0}
