-- Add a member to a global index set (outside every money script, gateway/store/keys.py). A
-- script only so that it is coalesced with the other calls of its event-loop turn.
-- KEYS: set   ARGV: member     Returns 1 if added, 0 if it was there
return redis.call('SADD', KEYS[1], ARGV[1])
