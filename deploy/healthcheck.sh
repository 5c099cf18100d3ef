#!/bin/bash
# Health check of the monitor (and aggregator) container: GET /health on the program's
# own HTTP port; succeed only on "200". It needs nothing but bash (its builtin /dev/tcp
# connections), so the runtime image carries no curl or wget. Docker kills it after
# HEALTHCHECK --timeout; `read -t` bounds the wait for the answer as well.
#
# HOST and PORT are the program's own settings (docs/CONFIGURATION.md); a wildcard
# address is checked on loopback. Tested by monitor/tests/it/deploy.rs.
set -euo pipefail

host="${HOST:-127.0.0.1}"
case "$host" in
  "" | 0.0.0.0 | localhost) host=127.0.0.1 ;;
  "::" | "[::]") host=::1 ;;
esac
host="${host#[}"
host="${host%]}"
port="${PORT:-8090}"

exec 3<>"/dev/tcp/$host/$port"
printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
read -r -t 4 _ status _ <&3
[[ "$status" == 200 ]]
