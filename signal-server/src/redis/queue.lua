-- find, next and stop: joining and leaving the queue and rooms.
-- A[1] 'find' | 'next' | 'stop', [2] conn, [3] its session if the node knows it, else ''.
OPS.queue = function(A)
  local op, conn = A[1], A[2]
  local s, sid = caller(conn, A[3], sess_hot)
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
        end_room(sid, s, 'next', true)
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
end
