-- Record a newly created project as a wallet's and active. Both keys are in the owner's slot;
-- the global facts (the project's owner, the metered set, the permanent name hold) are written
-- by the caller around this script (gateway/projects/records.py).
-- KEYS: project hash, wallet's project set
-- ARGV: project id, wallet (lowercase), unique name (lowercase), display name, created_at_ms,
--       first deployment id ('' for none)
redis.call('HSET', KEYS[1], 'wallet', ARGV[2], 'unique_name', ARGV[3], 'display_name', ARGV[4],
  'status', 'active', 'created_at_ms', ARGV[5], 'deployments', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[1])
return 'recorded'
