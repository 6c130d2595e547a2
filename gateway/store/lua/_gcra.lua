-- Shared by the rate-limit scripts (prepended by gateway/store/scripts.py).
-- gcra_hit(key, now_ms, period_ms, limit): GCRA, `limit` requests per `period_ms`, smoothly
-- refilled; the key holds the theoretical arrival time in ms. Counts the hit when allowed.
-- Returns allowed (1|0), retry_after_ms.
local function gcra_hit(key, now, period, limit)
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    return 0, math.ceil(allow_at - now)
  end
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
  return 1, 0
end
