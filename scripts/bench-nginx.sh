#!/usr/bin/env bash
# The gateway's hop against nginx's (issue 17): the identity model on cpu:0
# behind `mig-gateway up`, nginx 1.22 (Debian's package, `grpc_pass`) in
# front of the same worker, and the worker itself, measured by one
# `mig-loadtest sweep` that alternates between the three targets point by
# point at 1, 4 and 16 streams. Results go to docs/benchmarks.md.
#
#   scripts/bench-nginx.sh [mig-loadtest sweep flags]   # e.g. --warmup 5s
#
# DURATION (default 10s) is the length of each point.
#
# nginx is fetched once with `apt-get download` and unpacked under
# target/nginx (nothing is installed). OUT (default target/loadtest/nginx)
# receives the report; BIN_DIR (default ./target/release) holds the
# binaries; TENANTS=1 puts a tenants file (a key checked on every call) in
# the gateway's path.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/gateway.sh
BIN_DIR=${BIN_DIR:-./target/release}
out=${OUT:-target/loadtest/nginx}
nginx_root=$PWD/target/nginx
work=$(mktemp -d -t mig-bench-nginx.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

if [ ! -x "$nginx_root/usr/sbin/nginx" ]; then
  mkdir -p "$nginx_root/deb"
  (cd "$nginx_root/deb" && apt-get download nginx >/dev/null 2>&1)
  dpkg -x "$nginx_root"/deb/nginx_*.deb "$nginx_root"
fi
nginx=$nginx_root/usr/sbin/nginx
"$nginx" -v

printf '[[model]]\nname = "identity"\nidentity = true\nslices = ["cpu:0"]\n' >"$work/fleet.toml"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
gateway_flags=()
if [ "${TENANTS:-0}" = 1 ]; then
  printf '[[tenant]]\nname = "bench"\nmodels = ["identity"]\nadmin = true\n' >"$work/tenants.toml"
  key=$("$BIN_DIR/mig-gateway" tenant add-key --tenants "$work/tenants.toml" --tenant bench 2>/dev/null)
  export MIG_API_KEY=$key
  gateway_flags=(--tenants "$work/tenants.toml")
fi
start_gateway "$work/gateway" --fleet "$work/fleet.toml" --worker-token-file "$work/token" \
  "${gateway_flags[@]}"
gateway=$addr
worker=$("$BIN_DIR/mig-gateway" call --target "http://$gateway" models |
  sed -nE 's/.* address=http:\/\/([0-9.:]+).*/\1/p' | head -1)
[ -n "$worker" ] || { echo "no worker address from the gateway" >&2; exit 1; }

# nginx: one worker process (the gateway runs one process too), HTTP/2 in
# and out, upstream connections kept alive, no logs on the request path.
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr warn;
user root;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  upstream worker { server $worker; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port http2;
    location / { grpc_pass grpc://worker; }
  }
}
CONF
"$nginx" -p "$work/nginx" -e stderr -c "$work/nginx/nginx.conf" 2>"$work/nginx.log" &
pids+=($!)
sleep 1
kill -0 "${pids[-1]}" || { cat "$work/nginx.log" >&2; exit 1; }
echo "gateway $gateway, nginx 127.0.0.1:$nginx_port, worker $worker" >&2

# Through nginx the worker still asks for its caller token: the load tester
# sends it to every target that answers like a worker.
unset RUST_BACKTRACE
"$BIN_DIR/mig-loadtest" sweep --target "$gateway,127.0.0.1:$nginx_port,$worker" \
  --worker-token-file "$work/token" --model identity --concurrency 1,4,16 \
  --duration "${DURATION:-10s}" --max-tokens 64 --out "$out" "$@"
