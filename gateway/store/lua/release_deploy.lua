-- Release a deploy's (wallet, name) lock if the caller still holds it and, when the deploy
-- finished, forget its attempt in the same step (one command at the end of every deploy).
-- The attempt is deleted only by the lock's holder, so re-sending this after a lost reply
-- never deletes the attempt of a deploy that took the lock since.
-- KEYS: lock, attempt hash   ARGV: holder token, 1 to forget the attempt (else 0)
-- Returns 1 if the lock was released, 0 if it had expired or another request holds it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[2])
end
return 1
