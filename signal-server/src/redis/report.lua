-- report: counts a report against the partner's address (once per match and reporter); at the
-- threshold the address is banned on every node at once: its sessions end, its sockets are
-- told and closed, and every node hears of the ban.
-- A[1] conn, [2] threshold (0: never), [3] window (ms), [4] ban (ms), [5] the socket's
-- session if the node knows it, else ''.
OPS.report = function(A)
  local conn = A[1]
  local threshold, window, ban_ms = tonumber(A[2]), tonumber(A[3]), tonumber(A[4])
  local s, sid = caller(conn, A[5])
  local outcome = ''
  if s then
    if s.place ~= 'room' then
      reply_error(conn, 'not_matched', 'report needs a partner: you are not matched')
    elseif s.rep ~= '1' then
      redis.call('HSET', skey(sid), 'rep', '1')
      local ip = redis.call('HGET', skey(s.partner), 'ip')
      count('reports', 1)
      if ip then
        local k = P .. 'rep:' .. ip
        redis.call('ZREMRANGEBYSCORE', k, '-inf', fmt(NOW - window))
        redis.call('ZADD', k, NOW, sid .. ':' .. s.room)
        redis.call('PEXPIRE', k, window)
        if threshold > 0 and redis.call('ZCARD', k) >= threshold then
          redis.call('DEL', k)
          redis.call('SET', P .. 'ban:' .. ip, fmt(NOW + ban_ms), 'PX', ban_ms)
          count('bans', 1)
          redis.call('ZREMRANGEBYSCORE', P .. 'bans', '-inf', fmt(NOW))
          redis.call('ZADD', P .. 'bans', NOW + ban_ms, ip)
          redis.call('PEXPIRE', P .. 'bans', math.max(ban_ms, TTL))
          local victims = redis.call('SMEMBERS', P .. 'ip:' .. ip)
          table.sort(victims)
          for _, v in ipairs(victims) do
            local sv = sess(v)
            if sv and sv.conn ~= '' then
              record(sv.node, sv.conn, 'E', 'banned this address was reported too often and is banned for a while')
              record(sv.node, sv.conn, 'C', '1008')
              redis.call('HSET', skey(v), 'conn', '')
              redis.call('DEL', ckey(sv.node, sv.conn))
            end
          end
          for _, v in ipairs(victims) do
            local sv = sess(v)
            if sv then end_session(v, sv, 'disconnect') end
          end
          redis.call('DEL', P .. 'ip:' .. ip)
          redis.call('PUBLISH', P .. 'bans', ip .. ' ' .. fmt(ban_ms))
          outcome = 'banned'
        end
      end
    end
  end
end
