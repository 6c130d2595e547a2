-- Move a recorded settlement to its outcome: 'settled' (credit_tx mined and credited),
-- 'foreign' (credit_tx is someone else's tx that used the authorization first) or 'reverted'
-- (our tx failed and the authorization is unused: it is refused for good).
-- KEYS: settlement, in-flight set
-- ARGV: state, credit_tx, now_ms, gas_wei (what our tx cost, '' if none)
-- Returns 1 | 0 no recorded tx
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'claimed' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'credit_tx', ARGV[2], 'finished_at', ARGV[3])
redis.call('ZREM', KEYS[2], KEYS[1])
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'gas_wei', ARGV[4])
end
return 1
