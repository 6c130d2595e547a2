-- Append a deployment id (a redeploy) to a project's comma-separated list, once.
-- KEYS: project hash   ARGV: deployment id
-- Returns 'added' or 'known' (already in the list).
local current = redis.call('HGET', KEYS[1], 'deployments') or ''
for id in string.gmatch(current, '[^,]+') do
  if id == ARGV[1] then
    return 'known'
  end
end
if current == '' then
  redis.call('HSET', KEYS[1], 'deployments', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'deployments', current .. ',' .. ARGV[1])
end
return 'added'
