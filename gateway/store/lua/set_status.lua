-- Set a project's status (its record in the owner's slot). The caller keeps the global metered
-- set in step: a project leaves it after it is deleted here, and joins it before it is live.
-- KEYS: project hash   ARGV: status
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return ARGV[1]
