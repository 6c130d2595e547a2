-- Hand out the settler account's next nonce on one chain, shared by every gateway process:
-- the larger of what was handed out before and what the chain counts (pending included), so
-- two processes never sign two transactions with one nonce.
-- KEYS: settler_nonce   ARGV: chain_pending_nonce
-- Returns the nonce to sign with
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local nonce = math.max(stored, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], nonce + 1)
return nonce
