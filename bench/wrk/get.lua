-- GET the URL given to wrk; BENCH_AUTH (optional) is sent as Authorization
-- (e.g. "Bearer <access token>" for userinfo).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
