-- meshwall-rls: check and take, all or nothing, for every limit of one request (or of the part
-- of it that lives in one Redis Cluster slot). Runs atomically in Redis; the clock is Redis's
-- own (TIME), so every replica of the server decides on the same time.
--
-- KEYS[i]: the counter of limit i.
-- ARGV: 6 values per key: kind, p1, p2, p3, hits, enforce
--   kind 'b' (token bucket): p1 = max_tokens, p2 = tokens_per_fill, p3 = fill_interval_ms
--   kind 'w' (fixed window): p1 = requests_per_unit, p2 = window_ms (windows start at
--     multiples of it since the epoch, as envoyproxy/ratelimit's), p3 unused
--   enforce: '1' enforced, '0' shadow (never rejects; charged only when within its limit),
--     'q' quota mode (envoyproxy/ratelimit's quota_mode: rejects only when every quota-mode
--     limit of the request is over)
-- hits 0 checks without taking: OVER_LIMIT when nothing is left.
--
-- Returns {admitted (0|1), now_ms, then per key: ok (0|1), charged (0|1), remaining, reset_ms,
-- anchor} where anchor is the window start ('w') or the last fill ('b') the answer is based on.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local st = {}
local admitted = 1
local quotas, quota_ok = 0, 0
for i = 1, n do
  local b = (i - 1) * 6
  local kind = ARGV[b + 1]
  local p1 = tonumber(ARGV[b + 2])
  local p2 = tonumber(ARGV[b + 3])
  local p3 = tonumber(ARGV[b + 4])
  local hits = tonumber(ARGV[b + 5])
  local mode = ARGV[b + 6]
  local s = {kind = kind, p1 = p1, p2 = p2, p3 = p3, hits = hits}
  if kind == 'b' then
    local v = redis.call('HMGET', KEYS[i], 't', 'f')
    local tokens, last = p1, now
    if v[1] and v[2] then
      tokens = math.min(tonumber(v[1]), p1)
      last = tonumber(v[2])
    end
    if now > last then
      local fills = math.floor((now - last) / p3)
      if fills > 0 then
        tokens = math.min(p1, tokens + fills * p2)
        last = last + fills * p3
      end
    end
    s.have = tokens
    s.anchor = last
  else
    local ws = now - (now % p2)
    local v = redis.call('HMGET', KEYS[i], 'w', 'n')
    local used = 0
    if v[1] and tonumber(v[1]) == ws then
      used = tonumber(v[2]) or 0
    end
    s.have = math.max(p1 - used, 0)
    s.used = used
    s.anchor = ws
  end
  if hits == 0 then
    s.ok = s.have >= 1
  else
    s.ok = s.have >= hits
  end
  if mode == '1' and not s.ok then
    admitted = 0
  elseif mode == 'q' then
    quotas = quotas + 1
    if s.ok then quota_ok = quota_ok + 1 end
  end
  st[i] = s
end
if quotas > 0 and quota_ok == 0 then
  admitted = 0
end
local out = {admitted, now}
for i = 1, n do
  local s = st[i]
  local charged = 0
  local left = s.have
  if admitted == 1 and s.ok and s.hits > 0 then
    charged = 1
    left = s.have - s.hits
    if s.kind == 'b' then
      redis.call('HSET', KEYS[i], 't', left, 'f', s.anchor)
      -- Gone when it would be full again: an absent bucket is a full one.
      local fills = math.ceil((s.p1 - left) / s.p2)
      redis.call('PEXPIREAT', KEYS[i], s.anchor + fills * s.p3)
    else
      redis.call('HSET', KEYS[i], 'w', s.anchor, 'n', s.used + s.hits)
      redis.call('PEXPIREAT', KEYS[i], s.anchor + s.p2)
    end
  end
  local reset
  if s.kind == 'b' then
    if left >= s.p1 then
      reset = 0
    else
      reset = math.min(math.max(s.anchor + s.p3 - now, 1), s.p3)
    end
  else
    reset = s.anchor + s.p2 - now
  end
  local ok = 0
  if s.ok then ok = 1 end
  out[#out + 1] = ok
  out[#out + 1] = charged
  out[#out + 1] = left
  out[#out + 1] = reset
  out[#out + 1] = s.anchor
end
return out
