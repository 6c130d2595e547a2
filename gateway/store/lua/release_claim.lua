-- Give a claim back after a failed or pending verification: only the holder's own claim.
-- KEYS: claim   ARGV: token     Returns 1 if released, 0 otherwise
if redis.call('GET', KEYS[1]) == 'pending:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
