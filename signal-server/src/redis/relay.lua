-- relay: a signal a node sent straight to the partner's node (a PUBLISH, no script) that
-- could not be handed over there: the partner's socket is gone or moved, or the room ended.
-- The partner's node runs this to hold it, send it where the partner is now, or tell the
-- sender it is no longer matched. Signals of a room that ended never reach anyone else.
-- A[1] the sender's session, [2] the room it was sent in, [3] the signal message as sent
-- on the wire, [4] most signals held, [5] most bytes held.
OPS.relay = function(A)
  local sid, room, json = A[1], A[2], A[3]
  local max_msgs, max_bytes = tonumber(A[4]), tonumber(A[5])
  local f = redis.call('HMGET', skey(sid), 'node', 'conn')
  if f[1] then relay(sid, f[1], f[2], room, json, max_msgs, max_bytes) end
end
