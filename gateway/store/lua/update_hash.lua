-- Write hash fields, some only where absent, and renew the hash's TTL, in one step.
-- KEYS: hash   ARGV: ttl_ms, number of set-once pairs n, then n (field, value) pairs, then the
-- (field, value) pairs always written
-- Returns 1
local once = tonumber(ARGV[2])
local i = 3
for _ = 1, once do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
