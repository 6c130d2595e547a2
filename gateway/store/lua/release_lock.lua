-- Delete a key only if it still holds the caller's token: a lock, a pending idempotency
-- record, a name claim. A holder whose lease ran out cannot delete its successor's value.
-- KEYS: key   ARGV: token     Returns 1 if deleted, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
