-- batch: the commands of a node's sockets, in the order the sockets sent them, as one
-- script: ARGV[6..] is a run of operations, each its name, its argument count and its
-- arguments. Each runs in turn (an error stops that one only: the rest go on), then every
-- node's records go out, one message per node.
-- Returns {'' or the failed operations' positions (1-based, space-separated), pairs made}.
local failed = {}
local i, n = 6, 0
while i <= #ARGV do
  local op, count = OPS[ARGV[i]], tonumber(ARGV[i + 1])
  local args = {}
  for k = 1, count do args[k] = ARGV[i + 1 + k] end
  n = n + 1
  local ok, err = pcall(op, args)
  if not ok then
    failed[#failed + 1] = tostring(n)
    redis.log(redis.LOG_WARNING, 'strangers: operation ' .. ARGV[i] .. ' failed: ' .. tostring(err))
  end
  i = i + 2 + count
end
flush()
return { table.concat(failed, ' '), MATCHES }
