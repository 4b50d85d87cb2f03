-- The cluster's timers, run by every node a few times a second (each run is atomic, so two
-- nodes never handle the same timer): dead nodes' sessions are dropped (held for a resume
-- elsewhere), grace periods that ended end their sessions, interest waits that ended open
-- their sessions to anyone, and open sessions are paired two by two, oldest first.
-- ARGV[6] most items handled per kind in one run. Returns {'', matches made}.
local limit = tonumber(ARGV[6])

for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', fmt(NOW), 'LIMIT', 0, limit)) do
  if dead ~= NODE then
    local set = P .. 'n:' .. dead .. ':s'
    for _, sid in ipairs(redis.call('SMEMBERS', set)) do
      local s = sess(sid)
      if s and s.node == dead and s.conn ~= '' then drop_session(sid, s) end
    end
    redis.call('ZREM', P .. 'nodes', dead)
    count('nodes_reaped', 1)
  end
end

for _, sid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'graces', '-inf', fmt(NOW), 'LIMIT', 0, limit)) do
  redis.call('ZREM', P .. 'graces', sid)
  local s = sess(sid)
  if s and s.conn == '' then end_session(sid, s, 'disconnect') end
end

local opened = redis.call('ZRANGEBYSCORE', P .. 'q:opens', '-inf', fmt(NOW), 'LIMIT', 0, limit)
for _, sid in ipairs(opened) do
  redis.call('ZREM', P .. 'q:opens', sid)
  local s = sess(sid)
  if s and s.place == 'wait' then redis.call('ZADD', P .. 'q:open', tonumber(s.ticket), sid) end
end

if #opened > 0 then
  while true do
    local two = redis.call('ZRANGE', P .. 'q:open', 0, 1)
    if #two < 2 then break end
    local a, b = sess(two[1]), sess(two[2])
    if not (a and a.place == 'wait') then
      redis.call('ZREM', P .. 'q:open', two[1])
    elseif not (b and b.place == 'wait') then
      redis.call('ZREM', P .. 'q:open', two[2])
    else
      leave_queue(two[1], a)
      leave_queue(two[2], b)
      pair(two[1], a, two[2], b)
    end
  end
end

flush()
return { '', MATCHES }
