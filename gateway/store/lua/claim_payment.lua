-- Reserve a payment tx before any RPC call. The claim is permanent once credited ('used');
-- while verifying it is 'pending:<token>' with a lease, so a crashed verifier cannot lock a
-- payment forever.
-- KEYS: claim   ARGV: token, lease_ms
-- Returns 'reserved' | 'used' | 'busy'
if redis.call('SET', KEYS[1], 'pending:' .. ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 'reserved'
end
if redis.call('GET', KEYS[1]) == 'used' then
  return 'used'
end
return 'busy'
