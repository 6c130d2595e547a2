-- One signed ledger entry (adjustment, reversal, ...), optionally once per guard key.
-- KEYS: balance, ledger, seq, guard (in the wallet's slot; pass one even when unused)
-- ARGV: amount, kind, ref, reason, ts, use_guard (1|0), floor ('' or minimum balance)
-- Returns {'applied', balance, seq} | {'duplicate', balance} | {'insufficient', balance}
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  return {'duplicate', balance}
end
local amount = tonumber(ARGV[1])
if ARGV[7] ~= '' and balance + amount < tonumber(ARGV[7]) then
  return {'insufficient', balance}
end
local result = append_entry(KEYS[1], KEYS[2], KEYS[3], amount, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] == '1' then
  redis.call('SET', KEYS[4], result[2])
end
return {'applied', result[1], result[2]}
