-- Give back one failure counted by RateLimiter.count_failure: a contract wallet's signature was
-- charged before its EIP-1271 call and checked out.
-- KEYS[1] failure bucket; ARGV[1] now ms, ARGV[2] period ms, ARGV[3] limit
-- Returns 1
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2]) / tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then
  return 1
end
local new_tat = tat - interval
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
end
return 1
