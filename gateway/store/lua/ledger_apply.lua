-- One signed ledger entry (adjustment, reversal, ...), optionally once per guard key.
-- KEYS: balance, ledger, seq, wallets, guard ('' for none is not allowed: pass a key)
-- ARGV: wallet, amount, kind, ref, reason, ts, use_guard (1|0), floor ('' or minimum balance)
-- Returns {'applied', balance, seq} | {'duplicate', balance} | {'insufficient', balance}
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then
  return {'duplicate', balance}
end
local amount = tonumber(ARGV[2])
if ARGV[8] ~= '' and balance + amount < tonumber(ARGV[8]) then
  return {'insufficient', balance}
end
local result = append_entry(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], amount, ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if ARGV[7] == '1' then
  redis.call('SET', KEYS[5], result[2])
end
return {'applied', result[1], result[2]}
