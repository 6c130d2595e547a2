-- Reverse a credited payment that a reorg removed or changed: one ledger entry, once.
-- KEYS: payment, balance, ledger, seq (the payer's slot; the caller drops the re-check entry)
-- ARGV: amount_micro (positive; the entry is its negative), ts, ref, reason
-- Returns {'reversed', balance, seq} | {'duplicate', balance}
local balance = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('HGET', KEYS[1], 'status') ~= 'credited' then
  return {'duplicate', balance}
end
local result = append_entry(KEYS[2], KEYS[3], KEYS[4], -tonumber(ARGV[1]), 'reversal', ARGV[3], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'reversed', 'reversed_at', ARGV[2], 'reversal_reason', ARGV[4], 'reversal_seq', result[2])
return {'reversed', result[1], result[2]}
