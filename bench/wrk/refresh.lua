-- refresh_token grant with rotation: every refresh token is used exactly once.
-- BENCH_TOKENS names a file with one fresh refresh token per line (minted by
-- run.py through full logins). Each response's new refresh_token goes back
-- into the queue, so every connection runs a rotation chain, as an RP that
-- rotates its token does; the spare tokens in the file replace a chain that
-- broke. A request that finds no token left is sent with an invalid one (and
-- counts as a non-2xx error in the result), so nothing is ever reused.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local auth = os.getenv("BENCH_AUTH")
local queue, head, tail = {}, 1, 0
local spent, refill_failures = 0, 0

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function push(t) tail = tail + 1; queue[tail] = t end

local thread_counter = 0
function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end

function init(args)
  -- thread t of n takes lines t, t+n, t+2n, ... (n from BENCH_THREADS)
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" then
      if i % n == (tid - 1) then push(line) end
      i = i + 1
    end
  end
end

local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = auth,
}

function request()
  local token
  if head <= tail then
    token = queue[head]; queue[head] = nil; head = head + 1
  else
    token = "exhausted"; refill_failures = refill_failures + 1
  end
  spent = spent + 1
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. urlencode(token))
end

function response(status, hdrs, body)
  if status == 200 then
    local rt = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if rt then push(rt) end
  end
end
