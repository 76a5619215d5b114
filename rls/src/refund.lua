-- meshwall-rls: give back what take.lua charged, for a request whose limits span several Redis
-- Cluster slots and that another slot then rejected (all or nothing across slots).
-- KEYS[i]: a counter charged by take.lua. ARGV: 4 values per key: kind, p1 (max_tokens for
-- 'b'), anchor (the window start take.lua returned, for 'w'), hits.
-- A bucket that expired meanwhile is full already; a window that ended is gone: nothing to do.
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local kind = ARGV[b + 1]
  local p1 = tonumber(ARGV[b + 2])
  local anchor = tonumber(ARGV[b + 3])
  local hits = tonumber(ARGV[b + 4])
  if kind == 'b' then
    local v = redis.call('HGET', KEYS[i], 't')
    if v then
      redis.call('HSET', KEYS[i], 't', math.min(p1, tonumber(v) + hits))
    end
  else
    local v = redis.call('HMGET', KEYS[i], 'w', 'n')
    if v[1] and tonumber(v[1]) == anchor then
      redis.call('HSET', KEYS[i], 'n', math.max(0, (tonumber(v[2]) or 0) - hits))
    end
  end
end
return #KEYS
