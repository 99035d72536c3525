-- wrk script: POST one fixed JSON body (file given after `--`), optional bearer key, and print
-- the run's totals and latency percentiles as one JSON line for the harness to read.
function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] ~= nil and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  if os.getenv("BENCH_SDK_HEADERS") == "1" then
    -- What the openai Python SDK sends besides those (wrk adds Host and Content-Length).
    local sdk = {
      ["Accept-Encoding"] = "gzip, deflate", ["Connection"] = "keep-alive",
      ["Accept"] = "application/json", ["User-Agent"] = "OpenAI/Python 1.109.1",
      ["X-Stainless-Lang"] = "python", ["X-Stainless-Package-Version"] = "1.109.1",
      ["X-Stainless-OS"] = "Linux", ["X-Stainless-Arch"] = "x64",
      ["X-Stainless-Runtime"] = "CPython", ["X-Stainless-Runtime-Version"] = "3.11.7",
      ["X-Stainless-Async"] = "false", ["x-stainless-retry-count"] = "0",
      ["x-stainless-read-timeout"] = "600",
    }
    for name, value in pairs(sdk) do
      wrk.headers[name] = value
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"non2xx":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
