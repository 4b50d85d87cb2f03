-- hello: a new session, or the resume of a held one (from any node).
-- A[1] conn, [2] ip, [3] interests (JSON list), [4] resume token or '', [5] new session
-- id, [6] new token.
OPS.hello = function(A)
  local conn, ip, interests, token, new_sid, new_token = A[1], A[2], A[3], A[4], A[5], A[6]

  if redis.call('EXISTS', ckey(NODE, conn)) == 1 then
    reply_error(conn, 'bad_message', 'hello was already received on this socket')
    return
  end

  if redis.call('EXISTS', P .. 'ban:' .. ip) == 1 then
    reply_error(conn, 'banned', 'this address is banned for a while')
    record(NODE, conn, 'C', '1008')
    return
  end

  local sid = nil
  if token ~= '' then sid = redis.call('GET', P .. 'tok:' .. token) end
  local s = sid and sess(sid)
  if s then
    if s.conn ~= '' then
      record(s.node, s.conn, 'C', '4000')
      redis.call('DEL', ckey(s.node, s.conn))
    end
    if s.node ~= NODE then
      redis.call('SREM', P .. 'n:' .. s.node .. ':s', sid)
    end
    redis.call('SADD', P .. 'n:' .. NODE .. ':s', sid)
    touch(P .. 'n:' .. NODE .. ':s')
    if s.ip ~= ip then
      redis.call('SREM', P .. 'ip:' .. s.ip, sid)
      redis.call('SADD', P .. 'ip:' .. ip, sid)
      touch(P .. 'ip:' .. ip)
    end
    redis.call('HSET', skey(sid), 'node', NODE, 'conn', conn, 'ip', ip, 'grace', '')
    redis.call('SET', ckey(NODE, conn), sid, 'PX', TTL)
    s.node, s.conn, s.ip = NODE, conn, ip
    redis.call('ZREM', P .. 'graces', sid)
    count('resumes', 1)
    local room = ''
    if s.place == 'room' then room = s.room end
    record(NODE, conn, 'W', sid .. ' ' .. s.tok .. ' 1 ' .. room)
    local k = P .. 'p:' .. sid
    for _, m in ipairs(redis.call('LRANGE', k, 0, -1)) do record(NODE, conn, 'T', m, sid) end
    redis.call('DEL', k)
    redis.call('HSET', skey(sid), 'pn', '0', 'pb', '0')
    if s.place == 'park' then
      enqueue(sid, s, tonumber(s.ticket), tonumber(s.since))
    elseif s.place == 'wait' then
      send_to(sid, s, '{"type":"queued"}')
    end
  else
    sid = new_sid
    redis.call('HSET', skey(sid), 'tok', new_token, 'ip', ip, 'int', interests, 'node', NODE, 'conn', conn,
      'place', 'idle', 'ticket', '0', 'since', '0', 'room', '', 'partner', '', 'rep', '0', 'grace', '',
      'pn', '0', 'pb', '0')
    touch(skey(sid))
    count('sessions', 1)
    redis.call('SET', P .. 'tok:' .. new_token, sid, 'PX', TTL)
    redis.call('SET', ckey(NODE, conn), sid, 'PX', TTL)
    redis.call('SADD', P .. 'n:' .. NODE .. ':s', sid)
    touch(P .. 'n:' .. NODE .. ':s')
    redis.call('SADD', P .. 'ip:' .. ip, sid)
    touch(P .. 'ip:' .. ip)
    record(NODE, conn, 'W', sid .. ' ' .. new_token .. ' 0 ')
  end
end
