-- Give a leader lease back on shutdown, only if the caller still holds it.
-- KEYS: lease   ARGV: holder token     Returns 1 if dropped, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
