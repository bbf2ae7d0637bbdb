-- wrk script of bench/loadgen_wrk.py: closed-loop POSTs of the benchmark's embedding bodies.
--   wrk -t T -c C -d S --latency -s bench/wrk_embeddings.lua URL -- BODIES PATH
-- BODIES holds one JSON request body a line (written by bench/loadgen_wrk.py, the same bodies as the
-- Python generator's); each thread starts at its own offset and rotates over all of them. Every
-- answer is counted by its status (not only wrk's ">= 400" error count), and done() prints one
-- line "WRK_JSON {...}" with the counts, socket errors, timeouts and latency percentiles (us).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  bodies_path, route = args[1], args[2]
  prepared = {}
  for line in io.lines(bodies_path) do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", route, {["Content-Type"] = "application/json"}, line)
    end
  end
  count = #prepared
  at = (tid * 512) % count
  codes = {}
end

function request()
  at = at % count + 1
  return prepared[at]
end

function response(status, headers, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("codes")) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%s": %d', code, n)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "codes": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ", "), e.connect, e.read, e.write, e.status, e.timeout))
end
