-- Add (or rescore) a member of a global sorted set, such as the re-check queue. A script only
-- so that it is coalesced with the other calls of its event-loop turn.
-- KEYS: sorted set   ARGV: member, score     Returns 1 if added, 0 if rescored
return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
