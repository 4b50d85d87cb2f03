-- Gauges and counters of the whole cluster, for /metrics. Reads only.
-- Returns {sessions, dropped, queued, rooms, bans active, matches, signals, resumes, reports, bans}.
local s = redis.call('HMGET', P .. 'stats', 'sessions', 'rooms', 'matches', 'signals', 'resumes', 'reports', 'bans')
local function n(v) return tonumber(v or '0') or 0 end
return {
  n(s[1]),
  redis.call('ZCARD', P .. 'graces'),
  redis.call('ZCARD', P .. 'q:open') + redis.call('ZCARD', P .. 'q:opens'),
  n(s[2]),
  redis.call('ZCOUNT', P .. 'bans', fmt(NOW), '+inf'),
  n(s[3]), n(s[4]), n(s[5]), n(s[6]), n(s[7]),
}
