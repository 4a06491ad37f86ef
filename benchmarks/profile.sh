#!/usr/bin/env bash
# Quick A/B loop for the hot path (not the benchmark): a 1-worker servegate on CPU 1, the fake backend and
# wrk -t1 -c64 on CPU 0, 8 s of load; prints RPS and the proxy's CPU per request split into user and kernel
# time (from /proc/PID/stat). Optionally records a profile of the proxy during the load.
#
#   bash benchmarks/profile.sh [bare|plugins|lb[:algorithm]|llm|llm-router|llm-metrics] [spy|perf|perf-dwarf|strace|callgrind]
#   PYTHONPATH=.build/compiled bash benchmarks/profile.sh plugins perf   # the compiled build (scripts/build-compiled)
#
# `callgrind` runs the proxy under valgrind and prints its user-space instructions per request instead of the
# timed figures: slow (about 1,000 requests/s) but steady to within 1-2 % from run to run, where the timed loop
# moves by 10-15 % on these machines; the A/B measure for a change of a few percent. Then
# `callgrind_annotate --inclusive=yes $OUT/callgrind.out.1` shows where they go.
#
# Output lands in $OUT (default /tmp/servegate-profile): wrk.txt, spy.txt (py-spy raw), perf.data, strace.txt,
# callgrind.out.*. Needs wrk, curl, taskset; py-spy / perf / strace / valgrind for the profiles. Ports 19500
# (backend), 19080, 19001.
set -eu
cd "$(dirname "$0")/.."
VENV="$PWD/.venv/bin"
OUT="${OUT:-/tmp/servegate-profile}"
MODE="${1:-bare}"
PROFILER="${2:-}"
BP=19500 PP=19080 AP=19001
rm -rf "$OUT" && mkdir -p "$OUT"
taskset -c 0 "$VENV/python" benchmarks/backend.py --port $BP --host 127.0.0.1,127.0.0.2,127.0.0.3 \
  > "$OUT/backend.log" 2>&1 &
BPID=$!
RUN=()
[ "$PROFILER" = callgrind ] && RUN=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out")
SERVEGATE_PREFIX="$OUT" SERVEGATE_DATABASE=sqlite SERVEGATE_PROXY_ACCESS_LOG=off \
  SERVEGATE_PROXY_LISTEN=127.0.0.1:$PP SERVEGATE_ADMIN_LISTEN=127.0.0.1:$AP \
  taskset -c 1 "${RUN[@]}" "$VENV/python" "$VENV/servegate" start > "$OUT/servegate.log" 2>&1 &
SPID=$!
trap 'kill $SPID $BPID 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 600); do curl -s -o /dev/null "127.0.0.1:$AP/" && break; sleep 0.1; done
admin() { curl -sf -o /dev/null "127.0.0.1:$AP$1" "${@:2}"; }
if [ "${MODE%%:*}" = lb ]; then
  # `lb[:algorithm]`: the service on an upstream of three targets (three loopback addresses of the backend)
  ALG="${MODE#lb}"; ALG="${ALG#:}"
  admin /upstreams -d name=bench-up -d "algorithm=${ALG:-round-robin}"
  for h in 127.0.0.1 127.0.0.2 127.0.0.3; do admin /upstreams/bench-up/targets -d target=$h:$BP; done
  admin /services -d name=bench -d url=http://bench-up:$BP
else
  admin /services -d name=bench -d url=http://127.0.0.1:$BP
fi
admin /services/bench/routes -d 'paths[]=/v1' -d strip_path=false -d name=r
# llm: the harness's servegate-1w+llm, model-router (an explicit entry for the model `fake`) + prometheus
# ai_metrics; llm-router and llm-metrics: one of the two alone, to split the cost.
if [ "$MODE" = llm ] || [ "$MODE" = llm-router ]; then
  admin /routes/r/plugins -H 'Content-Type: application/json' \
    -d '{"name":"model-router","config":{"backends":["bench"],"models":{"fake":["bench"]},"discovery":{"enabled":false}}}'
fi
if [ "$MODE" = llm ] || [ "$MODE" = llm-metrics ]; then
  admin /routes/r/plugins -H 'Content-Type: application/json' -d '{"name":"prometheus","config":{"ai_metrics":true}}'
fi
HDR=""
if [ "$MODE" = plugins ]; then
  admin /consumers -d username=bench
  admin /consumers/bench/key-auth -d key=bench-profile-key
  admin /routes/r/plugins -d name=key-auth
  admin /routes/r/plugins -d name=rate-limiting -d config.minute=1000000000
  HDR='wrk.headers["apikey"] = "bench-profile-key"'
fi
cat > "$OUT/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"fake","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
$HDR
LUA
sleep 0.5
URL="http://127.0.0.1:$PP/v1/chat/completions"
taskset -c 0 wrk -t1 -c64 -d2s -s "$OUT/post.lua" "$URL" > /dev/null  # warm-up
if [ "$PROFILER" = callgrind ]; then
  # Instructions of the measured requests only: instrumentation on around the load (the warm-up ran without it).
  callgrind_control -i on $SPID > /dev/null
  taskset -c 0 wrk -t1 -c64 -d8s -s "$OUT/post.lua" "$URL" > "$OUT/wrk.txt"
  callgrind_control -i off $SPID > /dev/null
  callgrind_control -d $SPID > /dev/null
  sleep 1
  reqs=$(grep -oE '[0-9]+ requests in' "$OUT/wrk.txt" | cut -d' ' -f1)
  ir=$(grep -h '^totals:' "$OUT"/callgrind.out.* | awk '{s += $2} END {print s}')
  echo "requests $reqs  instructions/request $((ir / reqs))"
  exit 0
fi
case "$PROFILER" in
  spy) ("$VENV/py-spy" record -r 500 -f raw -o "$OUT/spy.txt" -p $SPID -d 8 > /dev/null 2>&1 &) ;;
  perf) (perf record -F 2000 -g -p $SPID -o "$OUT/perf.data" -- sleep 6 > /dev/null 2>&1 &) ;;
  # call graphs through the compiled (mypyc) code, which has no frame pointers: then
  # `perf report -i $OUT/perf.data --children -g none --sort sym | grep CPyDef` gives each function's share
  perf-dwarf) (perf record -F 999 --call-graph dwarf,16384 -p $SPID -o "$OUT/perf.data" -- sleep 3 \
               > /dev/null 2>&1 &) ;;
  strace) (timeout 4 strace -c -f -p $SPID -o "$OUT/strace.txt" &) ;;
esac
t0=$(cut -d' ' -f14,15 /proc/$SPID/stat)
taskset -c 0 wrk -t1 -c64 -d8s -s "$OUT/post.lua" "$URL" > "$OUT/wrk.txt"
t1=$(cut -d' ' -f14,15 /proc/$SPID/stat)
"$VENV/python" - "$OUT/wrk.txt" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
reqs = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
(u0, s0), (u1, s1), hz = map(int, sys.argv[2].split()), map(int, sys.argv[3].split()), int(sys.argv[4])
user, kern = (u1 - u0) / hz * 1e6 / reqs, (s1 - s0) / hz * 1e6 / reqs
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"RPS {rps:,.0f}  CPU/request {user + kern:.1f} us (user {user:.1f}, kernel {kern:.1f})"
      + (f"  non-2xx: {bad.group(1)}" if bad else ""))
PY
