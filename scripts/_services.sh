# Shared by scripts/demo and scripts/test: a virtualenv, and Redis/PostgreSQL/MariaDB that answer.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

ensure_venv() {  # ensure_venv EXTRA
  local extra="$1" python="${PYTHON:-python3}"
  if [ ! -x "$PY" ]; then
    say "Creating virtualenv $VENV"
    "$python" -m venv "$VENV" || die "could not create a virtualenv with $python (Python >= 3.11 needed)"
  fi
  say "Installing django-report-export[$extra]"
  # uv resolves and installs in seconds where pip takes a minute or two; pip brings it once.
  # Unlike pip, uv compiles no bytecode unless asked: where PYTHONDONTWRITEBYTECODE is set,
  # every worker and server process the tests start would compile Django from source again.
  if [ ! -x "$VENV/bin/uv" ]; then
    "$PY" -m pip install --quiet --disable-pip-version-check uv || die "pip install uv failed"
  fi
  "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$PY" -e "$ROOT[$extra]" \
    || die "uv pip install failed"
}

redis_answers() {  # redis_answers HOST PORT
  "$PY" - "$1" "$2" <<'PY'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

ensure_redis() {  # ensure_redis URL
  local url="$1" hostport host port
  hostport="${url#redis://}"; hostport="${hostport%%/*}"; hostport="${hostport##*@}"
  host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=6379
  if redis_answers "$host" "$port"; then return 0; fi
  command -v redis-server >/dev/null \
    || die "no Redis answers at $host:$port and redis-server is not installed (apt-get install redis-server, or set REDIS_URL)"
  say "Starting redis-server on $host:$port"
  mkdir -p "$ROOT/var"
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
    --dir "$ROOT/var" --logfile "$ROOT/var/redis.log" || die "redis-server did not start"
  for _ in $(seq 50); do redis_answers "$host" "$port" && return 0; sleep 0.1; done
  die "redis-server started but does not answer on $host:$port"
}

pg_answers() { "$PY" - "$1" <<'PY'
import sys
import psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=2).close()
except Exception:
    sys.exit(1)
PY
}

ensure_postgres() {  # ensure_postgres URL (postgres://user@host:port/db)
  local url="$1" admin_url
  admin_url="${url%/*}/postgres"
  if ! pg_answers "$admin_url"; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
      say "Starting the PostgreSQL cluster"
      for version in /etc/postgresql/*; do
        pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start 2>/dev/null || true
      done
    fi
    for _ in $(seq 50); do pg_answers "$admin_url" && break; sleep 0.2; done
    pg_answers "$admin_url" || die "no PostgreSQL answers at $admin_url (install postgresql, or set TEST_DATABASE_URL)"
  fi
}

mariadb_answers() {  # mariadb_answers URL (mysql://user[:password]@host:port/db)
  "$PY" - "$1" <<'PY'
import sys
from urllib.parse import urlsplit
try:
    import MySQLdb
except ImportError:
    sys.exit(2)
url = urlsplit(sys.argv[1])
try:
    MySQLdb.connect(host=url.hostname or "127.0.0.1", port=url.port or 3306,
                    user=url.username or "root", password=url.password or "",
                    connect_timeout=2).close()
except Exception:
    sys.exit(1)
PY
}

ensure_mariadb() {  # ensure_mariadb URL; returns 1 (with a message) when no MariaDB can answer
  local url="$1" hostport host port server datadir status=0
  hostport="${url#mysql://}"; hostport="${hostport%%/*}"; hostport="${hostport##*@}"
  host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=3306
  mariadb_answers "$url" || status=$?
  [ "$status" -eq 0 ] && { ensure_mariadb_time_zones "$host" "$port"; return 0; }
  if [ "$status" -eq 2 ]; then
    say "MariaDB skipped: mysqlclient is not installed (pip install -e '.[mysql]')"
    return 1
  fi
  server="$(command -v mariadbd || command -v mysqld || true)"
  if [ -z "$server" ]; then
    say "MariaDB skipped: nothing answers at $host:$port and no mariadbd is installed" \
      "(apt-get install mariadb-server, or set the MariaDB URL)"
    return 1
  fi
  datadir="$ROOT/var/mariadb"
  if [ ! -d "$datadir/mysql" ]; then
    say "Creating a MariaDB data directory in $datadir"
    mkdir -p "$datadir"
    "$(command -v mariadb-install-db || command -v mysql_install_db)" --no-defaults \
      --datadir="$datadir" --auth-root-authentication-method=normal >"$ROOT/var/mariadb-install.log" 2>&1 \
      || { say "MariaDB skipped: mariadb-install-db failed (var/mariadb-install.log)"; return 1; }
  fi
  say "Starting $(basename "$server") on $host:$port"
  "$server" --no-defaults --user="$(id -un)" --datadir="$datadir" --bind-address="$host" --port="$port" \
    --socket="$datadir/mariadb.sock" --pid-file="$datadir/mariadb.pid" \
    --character-set-server=utf8mb4 --skip-name-resolve >"$ROOT/var/mariadb.log" 2>&1 &
  for _ in $(seq 100); do
    mariadb_answers "$url" && { ensure_mariadb_time_zones "$host" "$port"; return 0; }
    sleep 0.2
  done
  say "MariaDB skipped: $(basename "$server") started but does not answer on $host:$port (var/mariadb.log)"
  return 1
}

ensure_mariadb_time_zones() {  # ensure_mariadb_time_zones HOST PORT (as root, empty password)
  # Django's date lookups and the admin's date_hierarchy use CONVERT_TZ with zone names,
  # NULL until the server's time zone tables are loaded.
  local client
  client="$(command -v mariadb || command -v mysql || true)"
  [ -n "$client" ] || return 0
  if [ "$("$client" -uroot -h"$1" -P"$2" -N -e "SELECT CONVERT_TZ('2000-01-01', 'UTC', 'Europe/Berlin') IS NULL" 2>/dev/null)" = 1 ]; then
    say "Loading MariaDB's time zone tables"
    "$(command -v mariadb-tzinfo-to-sql || command -v mysql_tzinfo_to_sql)" /usr/share/zoneinfo 2>/dev/null \
      | "$client" -uroot -h"$1" -P"$2" mysql \
      || say "could not load the time zone tables (mariadb-tzinfo-to-sql /usr/share/zoneinfo | mariadb mysql)"
  fi
}
