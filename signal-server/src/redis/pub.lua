-- pub: a signal a node relays straight to its partner's socket on another node (it knows the
-- route from `matched`). No state is read: the partner's node hands it over if its socket is
-- still in that room, and runs OPS.relay otherwise; if that node is not heard, OPS.relay runs
-- here. Signals still count in the stats.
-- A[1] the partner's node, [2] its socket there, [3] the room, [4] the sender's session,
-- [5] the signal message as sent on the wire, [6] most signals held, [7] most bytes held.
OPS.pub = function(A)
  local node, conn, room, sid, json = A[1], A[2], A[3], A[4], A[5]
  record(node, conn, 'S', room .. ' ' .. sid .. ' ' .. json, nil, nil, { sid, room, json, A[6], A[7] })
end
