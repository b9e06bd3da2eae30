# Sourced by the bench scripts that compare the gateway's hop with nginx's:
# fetches Debian's nginx once and starts it in front of one worker.
#
#   start_nginx WORK_DIR WORKER_HOST:PORT
#
# nginx is fetched with `apt-get download` and unpacked under target/nginx
# (nothing is installed). It runs as one process (`master_process off`:
# the process that serves is the one whose CPU time is read), HTTP/2 in
# and out, upstream connections kept alive, no logs on the request path.
# Needs a `pids` array (the caller's trap kills them); sets `nginx_addr`
# (host:port) and `nginx_pid`.
start_nginx() {
  local work=$1 upstream=$2 root=$PWD/target/nginx port
  if [ ! -x "$root/usr/sbin/nginx" ]; then
    mkdir -p "$root/deb"
    (cd "$root/deb" && apt-get download nginx >/dev/null 2>&1)
    dpkg -x "$root"/deb/nginx_*.deb "$root"
  fi
  "$root/usr/sbin/nginx" -v
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$work/nginx/tmp"
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
master_process off;
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
  upstream worker { server $upstream; keepalive 64; }
  server {
    listen 127.0.0.1:$port http2;
    location / { grpc_pass grpc://worker; }
  }
}
CONF
  "$root/usr/sbin/nginx" -p "$work/nginx" -e stderr -c "$work/nginx/nginx.conf" 2>"$work/nginx.log" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  sleep 1
  kill -0 "$nginx_pid" || { cat "$work/nginx.log" >&2; exit 1; }
  nginx_addr=127.0.0.1:$port
}
