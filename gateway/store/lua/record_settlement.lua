-- Record the settlement tx of a claimed authorization before it is sent (or the tx of
-- someone else who settled it first, with raw empty). Only the current holder may, once.
-- KEYS: settlement, in-flight set
-- ARGV: holder, tx, raw, settler_nonce, state ('signed' | 'foreign'), now_ms, chain name
-- Returns 1 recorded | 0 not the holder or already recorded
if redis.call('HGET', KEYS[1], 'state') ~= 'claimed' then
  return 0
end
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[5], 'tx', ARGV[2], 'raw', ARGV[3],
  'settler_nonce', ARGV[4], 'credit_tx', ARGV[2], 'recorded_at', ARGV[6], 'chain', ARGV[7])
if ARGV[5] == 'signed' then
  redis.call('ZADD', KEYS[2], ARGV[6], KEYS[1])
end
return 1
