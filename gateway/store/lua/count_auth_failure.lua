-- A request whose authentication failed, or whose signature is about to cost an RPC call:
-- count it against its (IP, wallet header) bucket like any request, and against the client
-- IP's failed-authentication budget, whatever wallet it claims. Both are GCRA buckets; a
-- bucket is only advanced when it admits the request.
-- KEYS[1] request bucket, KEYS[2] failure bucket (per IP)
-- ARGV[1] now ms, ARGV[2] request period ms, ARGV[3] request limit,
-- ARGV[4] failure period ms, ARGV[5] failure limit
-- Returns {allowed (1|0), retry_after_ms, bucket that refused ('' | 'request' | 'failure')}
-- Both buckets step through gcra_hit (_gcra.lua).
local now = tonumber(ARGV[1])
local allowed, retry = gcra_hit(KEYS[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]))
if allowed == 0 then
  return {0, retry, 'request'}
end
allowed, retry = gcra_hit(KEYS[2], now, tonumber(ARGV[4]), tonumber(ARGV[5]))
if allowed == 0 then
  return {0, retry, 'failure'}
end
return {1, 0, ''}
