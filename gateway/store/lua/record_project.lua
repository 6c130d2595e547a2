-- Record a newly created project as a wallet's and active, and make its name the wallet's for
-- good (the permanent form of the claim that claim_name took with a TTL).
-- KEYS: project hash, wallet's project set, metered (active) project set, name owner key
-- ARGV: project id, wallet (lowercase), unique name (lowercase), display name, created_at_ms,
--       first deployment id ('' for none)
redis.call('HSET', KEYS[1], 'wallet', ARGV[2], 'unique_name', ARGV[3], 'display_name', ARGV[4],
  'status', 'active', 'created_at_ms', ARGV[5], 'deployments', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[2])
return 'recorded'
