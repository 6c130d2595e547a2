-- Mark a verified payment used and credit it, atomically: claim, record, ledger, balance.
-- KEYS: claim, payment, balance, ledger, seq, wallets, wallet_payments, recheck
-- ARGV: token, wallet, amount_micro, ts, ref ('chain_id:tx'), record_json, recheck_score ('' = none),
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
redis.call('SET', KEYS[1], 'used')  -- no expiry: a credited tx is never claimable again
local result = append_entry(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[2], tonumber(ARGV[3]), 'payment', ARGV[5], (ARGV[8] ~= nil and ARGV[8] ~= '') and ARGV[8] or 'payment received', ARGV[4])
local record = cjson.decode(ARGV[6])
record['credited_at'] = tonumber(ARGV[4])
record['ledger_seq'] = result[2]
record['status'] = 'credited'
for field, value in pairs(record) do
  redis.call('HSET', KEYS[2], field, tostring(value))
end
redis.call('LPUSH', KEYS[7], ARGV[5])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[8], tonumber(ARGV[7]), ARGV[5])
end
return {'credited', result[1], result[2]}
