-- A socket ended. A clean close ends its session; a dropped socket leaves it held for the
-- grace period (out of the queue if it was waiting). Nothing if the session has moved on to
-- another socket meanwhile.
-- A[1] conn, [2] 'clean' | 'dropped', [3] its session if the node knows it, else ''.
OPS.close = function(A)
  local conn, how = A[1], A[2]
  local sid = A[3]
  if sid == '' then sid = redis.call('GET', ckey(NODE, conn)) end
  redis.call('DEL', ckey(NODE, conn))
  local s = sid and sess(sid)
  if s and s.node == NODE and s.conn == conn then
    if how == 'clean' then
      end_session(sid, s, 'disconnect')
    else
      drop_session(sid, s)
    end
  end
end
