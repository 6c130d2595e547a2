-- Take or renew a leader lease: one holder at a time among all gateway processes.
-- KEYS: lease   ARGV: holder token, lease_ms
-- Returns 1 when the caller holds the lease afterwards (taken or renewed), 0 when another does.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
