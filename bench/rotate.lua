-- wrk script for the many-sessions run: each request presents the next session's Cookie header
-- from a file (one header value per line, given after `--`), so the load walks the whole store
-- instead of hitting one hot entry. Reports like report.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local cookies = {}
local next_cookie = 0

function init(args)
  for line in io.lines(args[1]) do
    cookies[#cookies + 1] = line
  end
  if #cookies == 0 then error("no cookies in " .. tostring(args[1])) end
end

function request()
  next_cookie = next_cookie % #cookies + 1
  wrk.headers["Cookie"] = cookies[next_cookie]
  return wrk.format()
end
