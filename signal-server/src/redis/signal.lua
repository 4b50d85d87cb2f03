-- signal: relays the sender's data verbatim to its partner, on whatever node the partner is,
-- or holds it while the partner is reconnecting. (Nodes relay most signals without a script:
-- see relay.lua.)
-- A[1] conn, [2] the signal message as sent on the wire, [3] most signals held, [4] most
-- bytes held, [5] the socket's session if the node knows it, else ''.
OPS.signal = function(A)
  local conn, json, max_msgs, max_bytes = A[1], A[2], tonumber(A[3]), tonumber(A[4])
  local sid = A[5]
  if sid == '' then sid = redis.call('GET', ckey(NODE, conn)) end
  local f = { false, false }
  if sid then f = redis.call('HMGET', skey(sid), 'node', 'conn') end
  if f[1] ~= NODE or f[2] ~= conn then
    reply_error(conn, 'bad_message', 'the first message must be hello')
  else
    relay(sid, NODE, conn, nil, json, max_msgs, max_bytes)
  end
end
