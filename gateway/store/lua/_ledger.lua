-- Shared by every script that changes a balance (prepended by gateway/store/scripts.py).
-- append_entry(balance_key, ledger_key, seq_key, amount, kind, ref, reason, ts)
-- adds `amount` (signed integer micro-USD) to the balance and appends the ledger entry that
-- says so, in the same script: the sum of a wallet's entries always equals its balance.
-- All three keys are in the wallet's slot (seq numbers that wallet's entries); the global
-- wallets set is written by the caller, outside the script (gateway/store/keys.py).
local function append_entry(balance_key, ledger_key, seq_key, amount, kind, ref, reason, ts)
  local balance = redis.call('INCRBY', balance_key, amount)
  local seq = redis.call('INCR', seq_key)
  local entry = cjson.encode({
    seq = seq, ts = tonumber(ts), kind = kind, amount = tostring(amount),
    balance = tostring(balance), ref = ref, reason = reason,
  })
  redis.call('RPUSH', ledger_key, entry)
  return {balance, seq}
end
