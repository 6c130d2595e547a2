-- A request whose authentication failed, or whose signature is about to cost an RPC call:
-- count it against its (IP, wallet header) bucket like any request, and against the client
-- IP's failed-authentication budget, whatever wallet it claims. Both are GCRA buckets; a
-- bucket is only advanced when it admits the request.
-- KEYS[1] request bucket, KEYS[2] failure bucket (per IP)
-- ARGV[1] now ms, ARGV[2] request period ms, ARGV[3] request limit,
-- ARGV[4] failure period ms, ARGV[5] failure limit
-- Returns {allowed (1|0), retry_after_ms, bucket that refused ('' | 'request' | 'failure')}
local now = tonumber(ARGV[1])

local function take(key, period, limit)
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    return math.ceil(allow_at - now)
  end
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
  return 0
end

local retry = take(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if retry > 0 then
  return {0, retry, 'request'}
end
retry = take(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]))
if retry > 0 then
  return {0, retry, 'failure'}
end
return {1, 0, ''}
