-- The start of the Redis backend's function library (scripts.rs puts it together: this file,
-- then the operations, one file each, then each function's body). Redis loads the library
-- once; each function call runs atomically: no other node sees a state half-way through it.
--
-- Every function takes ARGV[1] node id of the caller, ARGV[2] TTL of session keys (ms),
-- ARGV[3] resume grace (ms), ARGV[4] interest wait (ms), ARGV[5] a random prefix for room ids
-- made by this call; its own arguments start at ARGV[6]. The commands of sockets run as
-- operations (OPS) in one call of `batch`; heartbeat, tick and stats are functions of their
-- own.
--
-- Keys (prefix strangers:): s:SID session hash; tok:TOKEN -> SID; c:NODE:CONN -> SID, the
-- session a socket speaks for; p:SID messages held while
-- the socket is down; n:NODE:s sessions a node speaks for; ip:IP sessions from an address;
-- q:open sessions waiting for anyone, scored by ticket; q:opens sessions waiting for a
-- stranger with a shared interest, scored by the instant that wait ends (a waiting session is
-- in exactly one of the two); q:i:TAG sessions waiting with that interest, by ticket; graces
-- dropped sessions scored by the end of their grace; nodes node liveness deadlines; ban:IP; rep:IP reports; stats counters; seq the counter tickets and
-- room numbers come from.
-- Every key gets a TTL when written.

local P = 'strangers:'

-- The state of one call, set by begin() at its start (a library is loaded once and its
-- functions called many times: nothing of a call may leak into the next).
local NODE, TTL, GRACE, WAIT, SALT, NOW
local MATCHES   -- pairs made
local OUT       -- node -> list of records {conn, kind, body, sid, message to hold}
local OUT_ORDER -- nodes in the order they were first written to
local TOUCHED   -- shared keys whose TTL this call has set already (touch_once)
local STATS     -- counters of the stats hash, added up during a call and written by flush()
local SEQ_NEXT, SEQ_END -- the block of the shared counter this call holds (next_seq)
local OPS = {}  -- name -> function(args) for batch.lua

local function fmt(n) return string.format('%d', n) end

local function begin(ARGV)
  NODE, TTL, GRACE, WAIT, SALT = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  MATCHES = 0
  OUT, OUT_ORDER, TOUCHED, STATS = {}, {}, {}, {}
  SEQ_NEXT, SEQ_END = 1, 0
end

-- Record kinds (records.rs parses them): T text, E error, W welcome, C close, M matched (the
-- node learns the route to the partner), L the room ended (the node forgets the route). (S,
-- a signal, is published by nodes themselves: see publish.rs.) `held` is what to hold for
-- `sid` if nobody hears the node, by default the body.
local function record(node, conn, kind, body, sid, held)
  local list = OUT[node]
  if not list then
    list = {}
    OUT[node] = list
    OUT_ORDER[#OUT_ORDER + 1] = node
  end
  list[#list + 1] = { conn, kind, body, sid, held or body }
end

local function skey(sid) return P .. 's:' .. sid end

local function sess(sid)
  if not sid or sid == '' then return nil end
  local v = redis.call('HGETALL', skey(sid))
  if #v == 0 then return nil end
  local t = {}
  for i = 1, #v, 2 do t[v[i]] = v[i + 1] end
  return t
end

-- The fields of a session that the queue and the rooms use: cheaper to read than all of them
-- (HMGET of a few fields against HGETALL), for the paths that run on every find and next.
local function sess_hot(sid)
  if not sid or sid == '' then return nil end
  local v = redis.call('HMGET', skey(sid), 'place', 'node', 'conn', 'int', 'ticket', 'partner', 'room')
  if not v[1] then return nil end
  return { place = v[1], node = v[2], conn = v[3], int = v[4], ticket = v[5], partner = v[6], room = v[7] }
end

-- A session's interest tags (most sessions have none: no JSON to decode then).
local NO_TAGS = {}
local function tags_of(s)
  if s.int == '[]' then return NO_TAGS end
  return cjson.decode(s.int)
end

local function touch(key) redis.call('PEXPIRE', key, TTL) end

-- Keys shared by everyone (queues, counters) get their TTL once per call, not per write.
local function touch_once(key)
  if not TOUCHED[key] then
    TOUCHED[key] = true
    touch(key)
  end
end

local function count(field, n) STATS[field] = (STATS[field] or 0) + n end

local function ckey(node, conn) return P .. 'c:' .. node .. ':' .. conn end

local function is_signal(json) return string.sub(json, 1, 16) == '{"type":"signal"' end

-- The bytes a held signal counts for: its data alone, as in the in-memory matchmaker (a
-- signal message is always `{"type":"signal","data":` DATA `}`).
local SIGNAL_WRAP = #'{"type":"signal","data":}'
local function signal_bytes(json) return #json - SIGNAL_WRAP end

-- Holds a message for a session whose socket is down (control messages are always kept).
local function hold(sid, json)
  local k = P .. 'p:' .. sid
  redis.call('RPUSH', k, json)
  touch(k)
  if is_signal(json) then
    redis.call('HINCRBY', skey(sid), 'pn', 1)
    redis.call('HINCRBY', skey(sid), 'pb', signal_bytes(json))
  end
end

local function drop_pending_signals(sid)
  local k = P .. 'p:' .. sid
  if redis.call('EXISTS', k) == 0 then return end
  local kept = {}
  for _, m in ipairs(redis.call('LRANGE', k, 0, -1)) do
    if not is_signal(m) then kept[#kept + 1] = m end
  end
  redis.call('DEL', k)
  if #kept > 0 then
    redis.call('RPUSH', k, unpack(kept))
    touch(k)
  end
  redis.call('HSET', skey(sid), 'pn', '0', 'pb', '0')
end

-- Sends a message to session `sid`, whose `node` and `conn` are in `s`, now (as a record of
-- `kind`, 'T' by default, whose body is `prefix` then the message), or holds it until the
-- session resumes.
local function send_to(sid, s, json, kind, prefix)
  if s.conn ~= '' then
    record(s.node, s.conn, kind or 'T', (prefix or '') .. json, sid, json)
  else
    hold(sid, json)
  end
end

local function reply_error(conn, code, message) record(NODE, conn, 'E', code .. ' ' .. message) end

local function leave_queue(sid, s)
  redis.call('ZREM', P .. 'q:open', sid)
  -- Only a session with interests ever waits in q:opens or q:i:*.
  if s.int ~= '[]' then
    redis.call('ZREM', P .. 'q:opens', sid)
    for _, tag in ipairs(tags_of(s)) do redis.call('ZREM', P .. 'q:i:' .. tag, sid) end
  end
end

-- The next number of the shared counter: tickets (the queue's order) and room numbers. A
-- call takes a block of numbers at once; a later call always gets higher ones.
local SEQ_BLOCK = 64
local function next_seq()
  if SEQ_NEXT > SEQ_END then
    SEQ_END = redis.call('INCRBY', P .. 'seq', SEQ_BLOCK)
    SEQ_NEXT = SEQ_END - SEQ_BLOCK + 1
    touch_once(P .. 'seq')
  end
  SEQ_NEXT = SEQ_NEXT + 1
  return SEQ_NEXT - 1
end

local function new_room_id()
  return SALT .. string.format('%08x', next_seq() % 4294967296)
end

-- Puts two sessions that left the queue into a new room; the older ticket makes the offer.
local function pair(a, sa, b, sb)
  if tonumber(sb.ticket) < tonumber(sa.ticket) then a, sa, b, sb = b, sb, a, sa end
  local room = new_room_id()
  local in_b = {}
  for _, t in ipairs(tags_of(sb)) do in_b[t] = true end
  local common = {}
  for _, t in ipairs(tags_of(sa)) do
    if in_b[t] then common[#common + 1] = cjson.encode(t) end
  end
  local ci = '[' .. table.concat(common, ',') .. ']'
  redis.call('HSET', skey(a), 'place', 'room', 'room', room, 'partner', b, 'rep', '0')
  redis.call('HSET', skey(b), 'place', 'room', 'room', room, 'partner', a, 'rep', '0')
  sa.place, sb.place = 'room', 'room'
  -- With `matched`, each side's node learns where the partner's socket is (a route: see
  -- route.rs), so that signals can skip the scripts.
  local matched = '{"type":"matched","room":"' .. room .. '","initiator":'
  local function route(sid, partner, sp)
    return room .. ' ' .. sid .. ' ' .. partner .. ' ' .. sp.node .. ' ' .. sp.conn .. ' '
  end
  send_to(a, sa, matched .. 'true,"common_interests":' .. ci .. '}', 'M', route(a, b, sb))
  send_to(b, sb, matched .. 'false,"common_interests":' .. ci .. '}', 'M', route(b, a, sa))
  count('matches', 1)
  count('rooms', 1)
  MATCHES = MATCHES + 1
end

-- The longest-waiting session sharing a tag; failing that, if open, the longest-waiting
-- session that accepts anyone. Entries whose session is gone are cleaned on the way.
local function best_partner(sid, tags, open)
  while true do
    local best, best_ticket = nil, nil
    for _, tag in ipairs(tags) do
      local r = redis.call('ZRANGE', P .. 'q:i:' .. tag, 0, 0, 'WITHSCORES')
      if r[1] and (not best_ticket or tonumber(r[2]) < best_ticket) then
        best, best_ticket = r[1], tonumber(r[2])
      end
    end
    if not best and open then best = redis.call('ZRANGE', P .. 'q:open', 0, 0)[1] end
    if not best then return nil end
    local s = sess_hot(best)
    if s and s.place == 'wait' and best ~= sid then return best, s end
    redis.call('ZREM', P .. 'q:open', best)
    redis.call('ZREM', P .. 'q:opens', best)
    for _, tag in ipairs(tags) do redis.call('ZREM', P .. 'q:i:' .. tag, best) end
  end
end

-- Tells a connected session it is queued, then pairs it or lets it wait.
local function enqueue(sid, s, ticket, since)
  send_to(sid, s, '{"type":"queued"}')
  local tags = tags_of(s)
  local open_at = since + WAIT
  local open = (#tags == 0) or NOW >= open_at
  s.ticket = fmt(ticket)
  local p, sp = best_partner(sid, tags, open)
  if p then
    leave_queue(p, sp)
    pair(p, sp, sid, s)
    return
  end
  redis.call('HSET', skey(sid), 'place', 'wait', 'ticket', fmt(ticket), 'since', fmt(since), 'room', '', 'partner', '')
  s.place = 'wait'
  if open then
    redis.call('ZADD', P .. 'q:open', ticket, sid)
    touch_once(P .. 'q:open')
  else
    redis.call('ZADD', P .. 'q:opens', open_at, sid)
    touch_once(P .. 'q:opens')
  end
  for _, tag in ipairs(tags) do
    redis.call('ZADD', P .. 'q:i:' .. tag, ticket, sid)
    touch(P .. 'q:i:' .. tag)
  end
end

local function enqueue_fresh(sid, s)
  local ticket = next_seq()
  enqueue(sid, s, ticket, NOW)
end

-- Ends a room that `leaver` left; the other member is told why. `requeued`: the leaver is
-- queued right after, which rewrites its place (so it is not written here).
local function end_room(sid, s, reason, requeued)
  local partner = s.partner
  count('rooms', -1)
  if not requeued then redis.call('HSET', skey(sid), 'place', 'idle', 'room', '', 'partner', '') end
  s.place = 'idle'
  -- Only a session whose socket is down holds messages.
  if s.conn == '' then drop_pending_signals(sid) end
  local f = { false, false }
  if partner and partner ~= '' then f = redis.call('HMGET', skey(partner), 'node', 'conn') end
  if f[2] then
    redis.call('HSET', skey(partner), 'place', 'idle', 'room', '', 'partner', '')
    if f[2] == '' then drop_pending_signals(partner) end
    send_to(partner, { node = f[1], conn = f[2] }, '{"type":"partner_left","reason":"' .. reason .. '"}', 'L')
  end
end

-- Ends a session for good: its room, its queue place, its token, its keys.
local function end_session(sid, s, reason)
  if s.place == 'room' then
    end_room(sid, s, reason)
  elseif s.place == 'wait' then
    leave_queue(sid, s)
  end
  redis.call('DEL', skey(sid), P .. 'tok:' .. s.tok, P .. 'p:' .. sid)
  if s.conn ~= '' then redis.call('DEL', ckey(s.node, s.conn)) end
  count('sessions', -1)
  redis.call('SREM', P .. 'n:' .. s.node .. ':s', sid)
  redis.call('SREM', P .. 'ip:' .. s.ip, sid)
  redis.call('ZREM', P .. 'graces', sid)
end

-- The socket of a session is gone without a close frame: hold the session for the grace.
local function drop_session(sid, s)
  local until_ms = NOW + GRACE
  redis.call('HSET', skey(sid), 'conn', '', 'grace', fmt(until_ms))
  if s.conn ~= '' then redis.call('DEL', ckey(s.node, s.conn)) end
  s.conn = ''
  redis.call('ZADD', P .. 'graces', until_ms, sid)
  touch_once(P .. 'graces')
  if s.place == 'wait' then
    leave_queue(sid, s)
    redis.call('HSET', skey(sid), 'place', 'park')
    s.place = 'park'
  end
end

-- Relays a signal from session `sid` (whose socket is `conn` on `node`, or '' if down) to
-- its partner in `room` (any room when `room` is nil): sent at once if the partner's socket
-- is up, held (bounded) while it is down. A sender no longer in that room is told.
local function relay(sid, node, conn, room, json, max_msgs, max_bytes)
  local f = redis.call('HMGET', skey(sid), 'place', 'room', 'partner')
  if f[1] ~= 'room' or (room and f[2] ~= room) then
    if conn ~= '' then
      record(node, conn, 'E', 'not_matched signal needs a partner: you are not matched')
    end
    return
  end
  local partner = f[3]
  local p = redis.call('HMGET', skey(partner), 'node', 'conn', 'pn', 'pb')
  if p[2] and p[2] ~= '' then
    record(p[1], p[2], 'T', json, partner)
    count('signals', 1)
  elseif p[2] then
    if tonumber(p[3]) >= max_msgs or tonumber(p[4]) + signal_bytes(json) > max_bytes then
      if conn ~= '' then
        record(node, conn, 'E',
          'buffer_full your partner is reconnecting and cannot take more signals yet; retry later')
      end
    else
      hold(partner, json)
      count('signals', 1)
    end
  end
end

-- The session this socket speaks for and its id, or nil (and the socket is told). The node
-- names the session once it knows it (from `welcome`); '' makes this look it up. `read`
-- reads the session (sess, or sess_hot where the caller needs no more).
local function caller(conn, sid, read)
  if not sid or sid == '' then sid = redis.call('GET', ckey(NODE, conn)) end
  local s = sid and (read or sess)(sid)
  if not s or s.node ~= NODE or s.conn ~= conn then
    reply_error(conn, 'bad_message', 'the first message must be hello')
    return nil
  end
  return s, sid
end

-- Publishes each node's records as one message, in order, then writes the counters. A node
-- nobody listens for (dead or reconnecting) loses nothing: its sessions are dropped and
-- their messages held.
local function flush()
  for _, node in ipairs(OUT_ORDER) do
    local list = OUT[node]
    local parts = {}
    for i = 1, #list do
      local r = list[i]
      parts[i] = r[1] .. ' ' .. r[2] .. ' ' .. #r[3] .. ':' .. r[3]
    end
    if redis.call('PUBLISH', P .. 'node:' .. node, table.concat(parts)) == 0 then
      for _, r in ipairs(list) do
        if r[4] then
          local s = sess(r[4])
          if s and s.node == node and s.conn == r[1] then drop_session(r[4], s) end
          if s then hold(r[4], r[5]) end
        end
      end
    end
  end
  local written = false
  for field, n in pairs(STATS) do
    if n ~= 0 then
      redis.call('HINCRBY', P .. 'stats', field, n)
      written = true
    end
  end
  if written then touch_once(P .. 'stats') end
end
