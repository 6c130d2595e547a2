-- Give up a claim that recorded no tx (the authorization was refused before signing), so the
-- payer may submit it again once the cause is gone (e.g. funds arrived).
-- KEYS: settlement   ARGV: holder
-- Returns 1 released | 0 not ours or a tx is recorded
if redis.call('HGET', KEYS[1], 'state') == 'claimed'
    and redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
