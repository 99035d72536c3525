#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks use, when missing and when this
# user may: redis-server (state and cache tests), promtool (alert rule tests), nginx and wrk
# (benchmark upstream and load generator). Tests that need a missing tool skip and say which.
set -u
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${need[*]} (install them with your package manager)" >&2
  exit 0
fi
echo "install-system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages' own services are not wanted: tests start their own instances on free ports.
for service in nginx prometheus; do
  command -v service >/dev/null 2>&1 && service "$service" stop >/dev/null 2>&1 || true
done
exit 0
