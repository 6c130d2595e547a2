-- Replace a recorded, unmined settlement tx by one with the same nonce and higher fees (only
-- one of them can ever be mined). The record keeps every hash sent for it in 'txs', so the
-- one that is mined is found whichever it is.
-- KEYS: settlement   ARGV: old_tx, new_tx, new_raw, now_ms
-- Returns 1 replaced | 0 the record moved on (finished, or replaced by someone else)
if redis.call('HGET', KEYS[1], 'state') ~= 'signed' then
  return 0
end
if redis.call('HGET', KEYS[1], 'tx') ~= ARGV[1] then
  return 0
end
local txs = redis.call('HGET', KEYS[1], 'txs') or ARGV[1]
redis.call('HSET', KEYS[1], 'tx', ARGV[2], 'raw', ARGV[3], 'credit_tx', ARGV[2],
  'txs', txs .. ',' .. ARGV[2], 'replaced_at', ARGV[4], 'resends', 0)
return 1
