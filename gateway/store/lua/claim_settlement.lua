-- Claim one EIP-3009 authorization (chain, token, payer, nonce) for settlement, permanently.
-- A new claim records its holder and a lease. Once a signed tx is recorded the claim is never
-- handed out again: every later caller gets that tx to reconcile against. A claim whose holder
-- recorded nothing before its lease ran out is taken over (nothing was signed, so nothing can
-- be broadcast twice; record_settlement refuses the old holder from then on).
-- KEYS: settlement   ARGV: holder, now_ms, lease_ms, payer, token_address, value
-- Returns {'claimed'} | {'busy'} | {'recorded', tx, raw, credit_tx, state}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'holder', ARGV[1],
    'lease_until', tonumber(ARGV[2]) + tonumber(ARGV[3]), 'claimed_at', ARGV[2],
    'payer', ARGV[4], 'token_address', ARGV[5], 'value', ARGV[6])
  return {'claimed'}
end
if state == 'claimed' then
  if tonumber(redis.call('HGET', KEYS[1], 'lease_until')) < tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'holder', ARGV[1],
      'lease_until', tonumber(ARGV[2]) + tonumber(ARGV[3]))
    return {'claimed'}
  end
  return {'busy'}
end
local fields = redis.call('HMGET', KEYS[1], 'tx', 'raw', 'credit_tx')
return {'recorded', fields[1] or '', fields[2] or '', fields[3] or '', state}
