-- signal: relays the sender's data verbatim to its partner, on whatever node the partner is,
-- or holds it while the partner is reconnecting.
-- ARGV[6] conn, [7] the signal message as sent on the wire, [8] most signals held, [9] most
-- bytes held. Returns {'', 0}.
local conn, json, max_msgs, max_bytes = ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local sid = redis.call('GET', ckey(NODE, conn))
local f = { false, false, false, false }
if sid then f = redis.call('HMGET', skey(sid), 'node', 'conn', 'place', 'partner') end
if f[1] ~= NODE or f[2] ~= conn then
  reply_error(conn, 'bad_message', 'the first message must be hello')
elseif f[3] ~= 'room' then
  reply_error(conn, 'not_matched', 'signal needs a partner: you are not matched')
else
  local partner = f[4]
  local p = redis.call('HMGET', skey(partner), 'node', 'conn', 'pn', 'pb')
  if p[2] and p[2] ~= '' then
    record(p[1], p[2], 'T', json, partner)
    redis.call('HINCRBY', P .. 'stats', 'signals', 1)
  elseif p[2] then
    if tonumber(p[3]) >= max_msgs or tonumber(p[4]) + #json > max_bytes then
      reply_error(conn, 'buffer_full', 'your partner is reconnecting and cannot take more signals yet; retry later')
    else
      hold(partner, json)
      redis.call('HINCRBY', P .. 'stats', 'signals', 1)
    end
  end
end
flush()
return { '', 0 }
