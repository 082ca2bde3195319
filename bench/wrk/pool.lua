-- Replays a pool of pre-signed WeChat webhook requests, each exactly once.
--
--   wrk -tT ... -s bench/wrk/pool.lua URL -- POOL_FILE MODE CHECK_FILE T [HOST]
--
-- POOL_FILE   one request per line: "<target>\t<body>" (target = path?query), written
--             by bench/webhook.py with fresh timestamps, unique nonces and MsgIds.
-- MODE        "once": every request is sent at most once; threads get disjoint slices,
--             and a thread that runs out sends to /__pool_exhausted__ (a 404, so wrk
--             counts it as non-2xx and the run is invalid instead of measuring
--             duplicates).  "wrap": cycle through the pool (baseline only).
-- CHECK_FILE  first line "contains", "length" or "lengths", the rest the expected value:
--             every 2xx body must contain that text (plain mode), have that length in
--             bytes (safe mode: the encrypted reply has a fixed length), or one of the
--             comma-separated lengths (quota: one per unit's answer).
-- T           the number of wrk threads (-t), to split the pool between them.
-- done() prints one line "BENCH key=value ..." for bench/webhook.py to parse.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function init(args)
  local pool_path, check_path = args[1], args[3]
  mode = args[2] or "once"
  local nthreads = tonumber(args[4]) or 1
  local host = args[5] or "127.0.0.1"
  local check = read_file(check_path)
  local nl = string.find(check, "\n", 1, true)
  check_kind = string.sub(check, 1, nl - 1)
  check_value = string.sub(check, nl + 1)
  check_len = tonumber(check_value)
  check_lens = {}
  if check_kind == "lengths" then
    for v in string.gmatch(check_value, "[^,]+") do check_lens[tonumber(v)] = true end
  end

  -- This thread's slice of the pool: lines tid, tid + nthreads, tid + 2*nthreads, ...
  reqs = {}
  local i = 0
  for line in io.lines(pool_path) do
    if i % nthreads == tid then
      local tab = string.find(line, "\t", 1, true)
      local target, body = string.sub(line, 1, tab - 1), string.sub(line, tab + 1)
      reqs[#reqs + 1] = "POST " .. target .. " HTTP/1.1\r\n"
        .. "Host: " .. host .. "\r\n"
        .. "User-Agent: Mozilla/4.0\r\n"
        .. "Accept: */*\r\n"
        .. "Content-Type: text/xml\r\n"
        .. "Content-Length: " .. #body .. "\r\n"
        .. "\r\n" .. body
    end
    i = i + 1
  end
  n = #reqs
  idx = 0
  sent, exhausted, bad, checked = 0, 0, 0, 0
  exhausted_req = "GET /__pool_exhausted__ HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
end

function request()
  idx = idx + 1
  if idx > n then
    if mode == "wrap" then
      idx = 1
    else
      exhausted = exhausted + 1
      return exhausted_req
    end
  end
  sent = sent + 1
  return reqs[idx]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    checked = checked + 1
    if check_kind == "contains" then
      if not string.find(body, check_value, 1, true) then bad = bad + 1 end
    elseif check_kind == "length" then
      if #body ~= check_len then bad = bad + 1 end
    elseif check_kind == "lengths" then
      if not check_lens[#body] then bad = bad + 1 end
    end
  end
end

function done(summary, latency, requests)
  local t = { sent = 0, exhausted = 0, bad = 0, checked = 0, pool = 0 }
  for _, thread in ipairs(threads) do
    t.sent = t.sent + (thread:get("sent") or 0)
    t.exhausted = t.exhausted + (thread:get("exhausted") or 0)
    t.bad = t.bad + (thread:get("bad") or 0)
    t.checked = t.checked + (thread:get("checked") or 0)
    t.pool = t.pool + (thread:get("n") or 0)
  end
  io.write(string.format(
    "BENCH sent=%d exhausted=%d bad_body=%d checked=%d pool=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    t.sent, t.exhausted, t.bad, t.checked, t.pool,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
