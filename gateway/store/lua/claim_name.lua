-- Hold a uniqueName for a wallet through this gateway, so two wallets never both create it.
-- A claim taken here expires (a deploy in progress); record_project.lua makes it
-- permanent by writing the same key without a TTL.
-- KEYS: name owner key   ARGV: wallet (lowercase), ttl_ms
-- Returns 'claimed' (was free), 'mine' (already this wallet's; a temporary claim is renewed)
-- or 'taken' (another wallet holds it).
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'claimed'
end
if owner == ARGV[1] then
  if redis.call('PTTL', KEYS[1]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 'mine'
end
return 'taken'
