-- report: counts a report against the partner's address (once per match and reporter); at the
-- threshold the address is banned on every node at once: its sessions end, its sockets are
-- told and closed, and every node hears of the ban.
-- ARGV[6] conn, [7] threshold (0: never), [8] window (ms), [9] ban (ms).
-- Returns {'banned' or '', 0}.
local conn = ARGV[6]
local threshold, window, ban_ms = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local s, sid = caller(conn)
local outcome = ''
if s then
  if s.place ~= 'room' then
    reply_error(conn, 'not_matched', 'report needs a partner: you are not matched')
  elseif s.rep ~= '1' then
    redis.call('HSET', skey(sid), 'rep', '1')
    local ip = redis.call('HGET', skey(s.partner), 'ip')
    redis.call('HINCRBY', P .. 'stats', 'reports', 1)
    if ip then
      local k = P .. 'rep:' .. ip
      redis.call('ZREMRANGEBYSCORE', k, '-inf', fmt(NOW - window))
      redis.call('ZADD', k, NOW, sid .. ':' .. s.room)
      redis.call('PEXPIRE', k, window)
      if threshold > 0 and redis.call('ZCARD', k) >= threshold then
        redis.call('DEL', k)
        redis.call('SET', P .. 'ban:' .. ip, fmt(NOW + ban_ms), 'PX', ban_ms)
        redis.call('HINCRBY', P .. 'stats', 'bans', 1)
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
flush()
return { outcome, 0 }
