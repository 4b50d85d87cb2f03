-- The Redis backend's counterpart of the matchmaker's check_invariants, for tests: reads the
-- whole shared state (KEYS: fine for a test database, never for production) in one atomic
-- step and returns a list of violations, empty when all holds.
local P = 'strangers:'
local bad = {}
local function fail(what) bad[#bad + 1] = what end

local function sess(sid)
  local v = redis.call('HGETALL', P .. 's:' .. sid)
  if #v == 0 then return nil end
  local t = {}
  for i = 1, #v, 2 do t[v[i]] = v[i + 1] end
  return t
end

for _, key in ipairs(redis.call('KEYS', P .. 's:*')) do
  local sid = string.sub(key, #P + 3)
  local s = sess(sid)
  if s.place == 'room' then
    local p = sess(s.partner)
    if s.partner == sid then
      fail(sid .. ' is matched with itself')
    elseif not p then
      fail(sid .. ' is in a room with a session that is gone')
    elseif p.place ~= 'room' or p.partner ~= sid or p.room ~= s.room then
      fail(sid .. ' and its partner disagree about their room')
    end
  end
  local queued = redis.call('ZSCORE', P .. 'q:open', sid) or redis.call('ZSCORE', P .. 'q:opens', sid)
  if (s.place == 'wait') ~= (queued ~= false) then fail(sid .. ' is ' .. s.place .. ' but queued: ' .. tostring(queued)) end
  if s.place == 'wait' and s.conn == '' then fail(sid .. ' waits in the queue with no socket') end
  if s.conn == '' and not redis.call('ZSCORE', P .. 'graces', sid) then fail(sid .. ' is dropped with no grace') end
  if s.conn ~= '' and redis.call('GET', P .. 'c:' .. s.node .. ':' .. s.conn) ~= sid then
    fail(sid .. ' is not the session of its socket')
  end
  if redis.call('GET', P .. 'tok:' .. s.tok) ~= sid then fail(sid .. ' has lost its token') end
  if redis.call('PTTL', key) < 0 then fail(key .. ' has no TTL') end
end

for _, q in ipairs({ 'q:open', 'q:opens' }) do
  for _, sid in ipairs(redis.call('ZRANGE', P .. q, 0, -1)) do
    local s = sess(sid)
    if not s or s.place ~= 'wait' then fail(sid .. ' is queued but not waiting') end
  end
end
if redis.call('ZINTERCARD', 2, P .. 'q:open', P .. 'q:opens') > 0 then fail('a session waits in both queues') end
-- Two waiting sessions that could be paired would have been.
if redis.call('ZCARD', P .. 'q:open') > 1 then fail('two waiting sessions accept anyone') end
for _, key in ipairs(redis.call('KEYS', P .. 'q:i:*')) do
  if redis.call('ZCARD', key) > 1 then fail('two waiting sessions share the interest ' .. key) end
end
return bad
