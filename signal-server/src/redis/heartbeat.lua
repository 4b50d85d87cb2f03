-- A node says it is alive until now + timeout, and every so often extends the TTL of the
-- keys of the sessions it speaks for. A node that finds itself forgotten (reaped by the
-- others, or Redis restarted empty) is told so, and tells its clients to reconnect.
-- ARGV[6] timeout (ms), [7] '1' to refresh session TTLs, [8] '1' on the first beat, [9]
-- signals the node relayed without a script since its last beat (added to the stats).
-- Returns {'reaped' or '', 0}.
local timeout, refresh, first, relayed = tonumber(ARGV[6]), ARGV[7], ARGV[8], tonumber(ARGV[9])
count('signals', relayed)
local known = redis.call('ZSCORE', P .. 'nodes', NODE)
redis.call('ZADD', P .. 'nodes', NOW + timeout, NODE)
touch(P .. 'nodes')
if refresh == '1' then
  local set = P .. 'n:' .. NODE .. ':s'
  for _, sid in ipairs(redis.call('SMEMBERS', set)) do
    local f = redis.call('HMGET', skey(sid), 'tok', 'ip', 'conn')
    if f[1] then
      touch(skey(sid))
      touch(P .. 'tok:' .. f[1])
      touch(P .. 'ip:' .. f[2])
      if f[3] ~= '' then touch(ckey(NODE, f[3])) end
    else
      redis.call('SREM', set, sid)
    end
  end
  touch(set)
  for _, k in ipairs({ 'q:open', 'q:opens', 'graces', 'stats', 'seq' }) do
    if redis.call('EXISTS', P .. k) == 1 then touch(P .. k) end
  end
end
flush()
if not known and first ~= '1' then return { 'reaped', 0 } end
return { '', 0 }
