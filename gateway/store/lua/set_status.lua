-- Set a project's status and keep the metered set in step: deleted projects leave it, active
-- and suspended ones are in it.
-- KEYS: project hash, metered (active) project set   ARGV: project id, status
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[2] == 'deleted' then
  redis.call('SREM', KEYS[2], ARGV[1])
else
  redis.call('SADD', KEYS[2], ARGV[1])
end
return ARGV[2]
