-- Change a project's status only if it still has the expected one (compare-and-set), so a
-- suspension racing a delete never brings a deleted project back.
-- KEYS: project hash   ARGV: expected status, new status
-- Returns 'switched' | 'changed' (the status was not the expected one; nothing written)
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then
  return 'changed'
end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
return 'switched'
