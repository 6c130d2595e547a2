-- Burn one hour of one project from its wallet's credits, at most once per (project, hour).
-- The burn entry, the balance and the project's metered-hour marker change together; every key
-- is in the owner's slot.
-- KEYS: metered hour marker, project hash, balance, ledger, seq
-- ARGV: hour (Unix hours), amount_micro (positive; the entry is its negative), ts, ref, reason
-- Returns {'burned', balance, seq} | {'duplicate', balance} (hour at or before the marker)
--       | {'insufficient', balance} (the balance cannot pay it; nothing written)
--       | {'inactive', balance} (the project is not active: suspended, deleted or unknown)
local balance = tonumber(redis.call('GET', KEYS[3]) or '0')
if redis.call('HGET', KEYS[2], 'status') ~= 'active' then
  return {'inactive', balance}
end
local hour = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if hour <= last then
  return {'duplicate', balance}
end
local amount = tonumber(ARGV[2])
if balance < amount then
  return {'insufficient', balance}
end
local result = append_entry(KEYS[3], KEYS[4], KEYS[5], -amount, 'burn', ARGV[4], ARGV[5], ARGV[3])
redis.call('SET', KEYS[1], hour)
return {'burned', result[1], result[2]}
