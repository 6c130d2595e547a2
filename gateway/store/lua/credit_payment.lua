-- Mark one payer's verified payment used and credit it, atomically: claim, record, ledger,
-- balance. Every key is in the payer's slot; the claim is per (chain, tx, payer), so it is also
-- the in-slot guard: a second credit of the same payer's transfers is impossible whatever
-- happened to the global indexes written around this script (gateway/store/keys.py).
-- KEYS: claim, payment, balance, ledger, seq, wallet_payments
-- ARGV: token, amount_micro, ts, ref ('chain_id:tx'), record_json,
--       ledger reason ('' or absent = 'payment received')
-- Returns {'credited', balance, seq} | {'used', balance} | {'lost', balance}
local balance = tonumber(redis.call('GET', KEYS[3]) or '0')
local claim = redis.call('GET', KEYS[1])
if claim == 'used' then
  return {'used', balance}
end
if claim ~= 'pending:' .. ARGV[1] then
  return {'lost', balance}
end
redis.call('SET', KEYS[1], 'used')  -- no expiry: a credited payment is never claimable again
local reason = (ARGV[6] ~= nil and ARGV[6] ~= '') and ARGV[6] or 'payment received'
local result = append_entry(KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[2]), 'payment', ARGV[4], reason, ARGV[3])
local record = cjson.decode(ARGV[5])
record['credited_at'] = tonumber(ARGV[3])
record['ledger_seq'] = result[2]
record['status'] = 'credited'
for field, value in pairs(record) do
  redis.call('HSET', KEYS[2], field, tostring(value))
end
redis.call('LPUSH', KEYS[6], ARGV[4])
return {'credited', result[1], result[2]}
