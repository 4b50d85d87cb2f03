-- find, next and stop: joining and leaving the queue and rooms.
-- ARGV[6] 'find' | 'next' | 'stop', [7] conn. Returns {'', matches made}.
local op, conn = ARGV[6], ARGV[7]
local s, sid = caller(conn)
if s then
  if op == 'find' then
    if s.place == 'idle' then
      enqueue_fresh(sid, s)
    elseif s.place == 'room' then
      reply_error(conn, 'bad_message', 'already matched: send next to meet someone else')
    end
  elseif op == 'next' then
    if s.place == 'idle' then
      enqueue_fresh(sid, s)
    elseif s.place == 'room' then
      end_room(sid, s, 'next')
      enqueue_fresh(sid, s)
    end
  elseif op == 'stop' then
    if s.place == 'wait' then
      leave_queue(sid, s)
      redis.call('HSET', skey(sid), 'place', 'idle')
    elseif s.place == 'room' then
      end_room(sid, s, 'stop')
    end
  end
end
flush()
return { '', MATCHES }
