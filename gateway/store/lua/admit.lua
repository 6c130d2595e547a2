-- An authenticated request's one round trip: count it against the rate limit and consume its
-- nonce. A rate-limited request does not consume the nonce (the agent may retry with it).
-- KEYS[1] rate key, KEYS[2] nonce key
-- ARGV[1] now ms, ARGV[2] period ms, ARGV[3] limit, ARGV[4] nonce ttl seconds
-- Returns {allowed (1|0), retry_after_ms, nonce_fresh (1|0)}
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
  return {0, math.ceil(allow_at - now), 0}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  return {1, 0, 1}
end
return {1, 0, 0}
