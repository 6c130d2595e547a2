-- Take a deploy's (wallet, name) lock and, in the same step, read what the deploy decides on:
-- the wallet's unfinished attempt at the name, its balance and its project ids. One command
-- instead of four on every quote (docs/PERFORMANCE.md); every key is in the wallet's slot.
-- KEYS: lock, attempt hash, balance, wallet's project set   ARGV: holder token, lock ttl_ms
-- Returns {0} when another request holds the lock, else
-- {1, attempt fields (flat, empty if none), balance (nil if none), project ids}.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0}
end
return {1, redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[3]), redis.call('SMEMBERS', KEYS[4])}
