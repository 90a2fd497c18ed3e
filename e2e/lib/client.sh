# shellcheck shell=bash
# A client that sends requests to a URL continuously and records every answer (sourced, not
# run; needs e2e/cluster/lib.sh sourced first). It runs on the host inside the node's network
# namespace, where a Service's ClusterIP is reached through kube-proxy's rules, as a pod's
# traffic would be; curl in a loop, about $CLIENT_RATE requests a second (default 20), one
# request at a time.
#
#   client_start NAME URL      starts it; records to $CLIENT_DIR/NAME.log
#   client_stop NAME           stops it; prints `requests N failed M` (and `versions: ...`)
#   client_requests NAME [FROM [TO]]   how many requests started in [FROM, TO)
#   client_failed NAME [FROM [TO]]     how many of them failed
#   client_only_from NAME VERSION [AFTER]
#                              the start time of the first request (at or after AFTER) from
#                              which on every answer was a 200 from VERSION; fails when the
#                              last answer is not one
#   client_first NAME VERSION [AFTER]  the first 200 from VERSION (at or after AFTER)
#   client_last_other NAME VERSION     the last answer that was not a 200 from VERSION
#   client_failures NAME       the failed requests' lines
#   client_versions NAME       how many 200s each version gave
#
# Each line of NAME.log: `START-TIME CODE VERSION SECONDS`, START-TIME in seconds since the
# epoch with microseconds (bash's $EPOCHREALTIME, before the request), CODE the HTTP status or
# 000 when there was no answer (refused, reset, timed out after $CLIENT_TIMEOUT s, default 2),
# VERSION the `version=` of the body or `-`, SECONDS how long the request took. A request
# fails when its code is not 200. Times are seconds since the epoch, so they compare with
# `date +%s.%N` and with a status field through `date -d TIME +%s`.

CLIENT_DIR=${CLIENT_DIR:-/tmp/ferry-e2e-clients}
CLIENT_RATE=${CLIENT_RATE:-20}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-2}
# The network namespace to send from; empty sends from the host's own (which reaches the
# ClusterIPs too, through the route to 10.96.0.0/16).
CLIENT_NETNS=${CLIENT_NETNS-$NETNS}

# The loop, run by its own bash in its own session, so that client_stop ends it and the curl
# it runs at that moment, and nothing else.
_client_loop() {
  local url=$1 log=$2 pause=$3 timeout=$4 start out code body version took
  # Paced by the clock (microseconds), not by a fixed pause after each request, so the rate
  # holds whatever a request and the loop's own forks take.
  local step next now wait
  step=$((10#${pause%.*} * 1000000 + 10#${pause#*.} * 1000))
  next=${EPOCHREALTIME/./}
  while true; do
    next=$((next + step))
    start=$EPOCHREALTIME
    out=$(curl -sS -o - -w '\n%{http_code} %{time_total}' --max-time "$timeout" --no-keepalive \
      -H 'Connection: close' "$url" 2>/dev/null) || true
    code=${out##*$'\n'}
    took=${code#* }
    code=${code%% *}
    body=${out%$'\n'*}
    version=-
    [[ "$body" =~ version=([^ ]+) ]] && version=${BASH_REMATCH[1]}
    [[ "$code" =~ ^[0-9]{3}$ ]] || code=000
    echo "$start $code $version ${took:-0}" >>"$log"
    now=${EPOCHREALTIME/./}
    wait=$((next - now))
    if [ "$wait" -gt 0 ]; then
      sleep "$(printf '0.%06d' "$wait")"
    else
      next=$now   # behind (a slow answer): go on at once, and do not try to catch up
    fi
  done
}

client_start() {
  local name=$1 url=$2 pause
  mkdir -p "$CLIENT_DIR"
  [ ! -s "$CLIENT_DIR/$name.pid" ] || { echo "client $name runs already" >&2; return 1; }
  : >"$CLIENT_DIR/$name.log"
  pause=$(awk -v r="$CLIENT_RATE" 'BEGIN {printf "%.3f", 1 / r}')
  local enter=()
  [ -z "$CLIENT_NETNS" ] || enter=(nsenter --net="/run/netns/$CLIENT_NETNS" --)
  # The loop writes its own pid: setsid forks when its caller leads a process group (under
  # job control), and then $! would be setsid's, not the loop's.
  rm -f "$CLIENT_DIR/$name.pid"
  setsid "${enter[@]}" bash -c "$(declare -f _client_loop); echo \$\$ >\"\$3.pid\"; _client_loop \"\$1\" \"\$3.log\" \"\$2\" \"\$4\"" _ \
    "$url" "$pause" "$CLIENT_DIR/$name" "$CLIENT_TIMEOUT" </dev/null >/dev/null 2>&1 &
  echo "client $name: requests to $url, ~$CLIENT_RATE/s${CLIENT_NETNS:+ from network namespace $CLIENT_NETNS}, log $CLIENT_DIR/$name.log"
  # Its first answer, so that what follows is measured with the client running.
  local deadline=$((SECONDS + 10))
  until [ -s "$CLIENT_DIR/$name.log" ] && [ -s "$CLIENT_DIR/$name.pid" ]; do
    [ $SECONDS -lt $deadline ] || { echo "client $name: no request recorded within 10 s" >&2; return 1; }
    sleep 0.05
  done
}

client_stop() {
  local name=$1 pid
  pid=$(cat "$CLIENT_DIR/$name.pid" 2>/dev/null) || { echo "client $name is not running" >&2; return 1; }
  # setsid made it a session (and process group) leader: end the group, the curl of the moment
  # with it.
  kill -TERM -- "-$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -KILL -- "-$pid" 2>/dev/null || true; break; }
    sleep 0.05
  done
  rm -f "$CLIENT_DIR/$name.pid"
  echo "requests $(client_requests "$name") failed $(client_failed "$name")"
  echo "versions: $(client_versions "$name")"
}

# _client_awk NAME PROGRAM [awk -v ...] — runs PROGRAM over NAME's log.
_client_awk() {
  local name=$1 program=$2
  shift 2
  awk "$@" "$program" "$CLIENT_DIR/$name.log"
}

client_requests() {
  _client_awk "$1" '$1 >= from && (to == "" || $1 < to) {n++} END {print n + 0}' -v from="${2:-0}" -v to="${3:-}"
}

client_failed() {
  _client_awk "$1" '$1 >= from && (to == "" || $1 < to) && $2 != 200 {n++} END {print n + 0}' \
    -v from="${2:-0}" -v to="${3:-}"
}

client_failures() { _client_awk "$1" '$2 != 200'; }

client_versions() {
  _client_awk "$1" '$2 == 200 {n[$3]++} $2 != 200 {f[$2]++}
    END {for (v in n) printf "%s %d  ", v, n[v]; for (c in f) printf "failed(%s) %d  ", c, f[c]; print ""}'
}

client_only_from() {
  _client_awk "$1" '$1 >= after {
      if ($2 == 200 && $3 == v) { if (since == "") since = $1 } else since = ""
      last = $1
    }
    END {if (last == "" || since == "") exit 1; print since}' -v v="$2" -v after="${3:-0}"
}

client_first() {
  _client_awk "$1" '$1 >= after && $2 == 200 && $3 == v {print $1; found = 1; exit}
    END {exit !found}' -v v="$2" -v after="${3:-0}"
}

client_last_other() {
  _client_awk "$1" '!($2 == 200 && $3 == v) {t = $1} END {if (t == "") exit 1; print t}' -v v="$2"
}
