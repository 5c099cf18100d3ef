#!/usr/bin/env bash
# Makes the hub cluster's private route certificates: a route CA and, per server, a
# certificate for its route name that serves both ends of a route (serverAuth and
# clientAuth: routes are mutual TLS, `verify: true` in nats-N.conf).
#
#   deploy/nats/make-route-certs.sh OUT_DIR nats-1 nats-2 nats-3
#
# writes OUT_DIR/route-ca.pem (copy it to every server), OUT_DIR/route-ca.key (keep it
# offline) and OUT_DIR/<name>/{route.pem,route-key.pem,route-ca.pem} (one folder per
# server, to put next to its fullchain.pem and privkey.pem). Each certificate also
# names localhost and 127.0.0.1, so a cluster on one machine works too (the tests).
# Valid for DAYS days (default 825). Needs the openssl command.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR NAME..." >&2
  exit 2
fi
out=$1
shift
days=${DAYS:-825}
mkdir -p "$out"
cd "$out"
if [ ! -f route-ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout route-ca.key -out route-ca.pem -days "$days" -subj /CN=truebit-hub-route-CA \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    2>/dev/null
  chmod 600 route-ca.key
fi
for name in "$@"; do
  case $name in
    *[!A-Za-z0-9.-]*|'') echo "$0: $name is not a host name" >&2; exit 2 ;;
  esac
  mkdir -p "$name"
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$name" > "$name/ext.cnf"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name/route-key.pem" -out "$name/route.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$name/route.csr" -CA route-ca.pem -CAkey route-ca.key \
    -CAcreateserial -out "$name/route.pem" -days "$days" -extfile "$name/ext.cnf" 2>/dev/null
  cp route-ca.pem "$name/route-ca.pem"
  chmod 600 "$name/route-key.pem"
  rm -f "$name/route.csr" "$name/ext.cnf"
done
