#!/usr/bin/env bash
# Install (when missing) and start Redis and PostgreSQL on 127.0.0.1 for the multi-gateway tests,
# then print the environment the tests read. Use: eval "$(bash scripts/services.sh)"
# Root only (apt-get, pg_ctlcluster). Everything else goes to stderr.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
{
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The server itself, not just the client tools some images carry.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && command -v pg_lsclusters >/dev/null 2>&1 \
    || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL: Debian's own cluster, listening on loopback only.
read -r pg_version pg_cluster < <(pg_lsclusters -h | awk 'NR==1 {print $1, $2}')
if [ -z "${pg_version:-}" ]; then
    pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_cluster=main
    pg_createcluster "$pg_version" "$pg_cluster" >/dev/null
fi
conf_dir=/etc/postgresql/$pg_version/$pg_cluster/conf.d
mkdir -p "$conf_dir"
echo "listen_addresses = '127.0.0.1'" > "$conf_dir/malwaresnipper-loopback.conf"
if ! pg_lsclusters -h | awk -v c="$pg_cluster" '$2==c {print $4}' | grep -q online; then
    pg_ctlcluster "$pg_version" "$pg_cluster" start
fi
pg_port=$(pg_lsclusters -h | awk -v c="$pg_cluster" '$2==c {print $3}')
for _ in $(seq 50); do
    runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$pg_port" && break
    sleep 0.2
done
# A throwaway role for the tests: each test creates (and drops) its own database.
runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'malwaresnipper_test') THEN
    CREATE ROLE malwaresnipper_test LOGIN CREATEDB PASSWORD 'malwaresnipper_test';
  END IF;
END \$\$;
SQL

# Redis: a shared instance on loopback (the tests that restart Redis start their own).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no \
        --logfile /tmp/malwaresnipper-redis.log
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
} >&2
echo "export MALWARESNIPPER_TEST_POSTGRES_DSN='postgresql://malwaresnipper_test:malwaresnipper_test@127.0.0.1:${pg_port}/postgres'"
echo "export MALWARESNIPPER_TEST_REDIS_URL='redis://127.0.0.1:6379/0'"
