# Sourced by the bench scripts: starts `mig-gateway up` in the background
# and waits for its listening line.
#
#   start_gateway LOG_PREFIX [mig-gateway up flags...]
#
# Needs BIN_DIR and a `pids` array (the caller's trap kills them); sets
# `gateway_pid`, `addr` (host:port) and `metrics` (the /metrics URL, when
# `--metrics-listen` was given). Exits, printing the gateway's log, when it
# does not start within a minute.
start_gateway() {
  local prefix=$1 line waited=0
  shift
  "$BIN_DIR/mig-gateway" up --listen 127.0.0.1:0 "$@" >"$prefix.out" 2>"$prefix.log" &
  gateway_pid=$!
  pids+=("$gateway_pid")
  until line=$(grep -m1 '^mig-gateway listening on ' "$prefix.out"); do
    if ! kill -0 "$gateway_pid" 2>/dev/null || ((waited++ > 600)); then
      echo "the gateway did not start; its log:" >&2
      cat "$prefix.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  line=${line#mig-gateway listening on }
  addr=${line%%;*}
  metrics=$(sed -nE 's/.*metrics: (http:[^ ;]+).*/\1/p' <<<"$line")
}
