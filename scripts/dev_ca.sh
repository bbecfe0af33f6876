#!/usr/bin/env bash
# A development certificate authority for the TLS front (docs/security.md), made with openssl:
#
#   ca.pem / ca.key              the CA that signs the server and the clients (TLS_CLIENT_CA_FILE)
#   server.pem / server.key      the front's certificate for localhost and 127.0.0.1 (TLS_CERT_FILE, TLS_KEY_FILE)
#   client.pem / client.key      a client certificate from the CA (CN=bank-connector)
#   <NAME>.pem / <NAME>.key      one more client certificate from the CA per --client NAME (CN=NAME)
#   <NAME>.pem / <NAME>.key      a service certificate per --service NAME (CN=NAME): server and client
#                                authentication, for localhost, 127.0.0.1, ::1 and every --ip; what the
#                                stack's Kafka, Postgres, OpenBao, Consul and Ray present under `infra up --tls`
#   rogue-ca.pem, rogue-client.pem / .key   a client certificate from another CA, which the front must refuse
#
# Development only: the keys are unencrypted, in a git-ignored folder (default .stack/certs), readable
# by their owner alone. Existing files are kept (so running it again changes nothing); --force makes
# everything anew. ECDSA P-256 keys, SHA-256 signatures, SANs on every leaf.
#
# Usage: bash scripts/dev_ca.sh [--out DIR] [--client NAME]... [--service NAME]... [--ip ADDR]... [--days N] [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

out=.stack/certs
days=825
force=0
clients=()
services=()
ips=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --client) clients+=("$2"); shift 2 ;;
    --service) services+=("$2"); shift 2 ;;
    --ip) ips+=("$2"); shift 2 ;;
    --days) days=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "dev_ca.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for name in ${clients[@]+"${clients[@]}"} ${services[@]+"${services[@]}"}; do
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "dev_ca.sh: client name $name: letters, digits, . _ - only" >&2; exit 2; }
  case "$name" in ca|server|client|rogue-ca|rogue-client) echo "dev_ca.sh: $name is taken" >&2; exit 2 ;; esac
done
for ip in ${ips[@]+"${ips[@]}"}; do
  [[ "$ip" =~ ^[0-9A-Fa-f.:]+$ ]] || { echo "dev_ca.sh: --ip $ip is not an IP address" >&2; exit 2; }
done

command -v openssl >/dev/null 2>&1 || { echo "dev_ca.sh: openssl not found: apt-get install -y openssl" >&2; exit 1; }
# The parents (a new stack home) with the usual mode: Postgres, run as its own user under root,
# must traverse the stack home; only the certificates' own folder is private.
mkdir -p "$(dirname "$out")"
umask 077
mkdir -p "$out"
chmod 700 "$out"
if [ "$force" -eq 1 ]; then
  rm -f "$out"/*.pem "$out"/*.key "$out"/*.srl "$out"/*.csr "$out"/*.ext
fi

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# make_ca NAME SUBJECT: a self-signed CA certificate NAME.pem with its key NAME.key.
make_ca() {
  local name=$1 subject=$2
  [ -f "$out/$name.pem" ] && [ -f "$out/$name.key" ] && return 0
  newkey "$out/$name.key"
  openssl req -new -x509 -sha256 -key "$out/$name.key" -out "$out/$name.pem" -days "$days" -subj "$subject" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
  echo "dev_ca.sh: made $out/$name.pem" >&2
}

# make_leaf NAME CA SUBJECT EXTENSIONS: NAME.pem/NAME.key signed by CA.pem/CA.key.
make_leaf() {
  local name=$1 ca=$2 subject=$3 extensions=$4
  [ -f "$out/$name.pem" ] && [ -f "$out/$name.key" ] && return 0
  newkey "$out/$name.key"
  openssl req -new -sha256 -key "$out/$name.key" -out "$out/$name.csr" -subj "$subject"
  printf '%b' "$extensions" > "$out/$name.ext"
  openssl x509 -req -sha256 -in "$out/$name.csr" -CA "$out/$ca.pem" -CAkey "$out/$ca.key" \
    -CAcreateserial -CAserial "$out/$ca.srl" -days "$days" -extfile "$out/$name.ext" -out "$out/$name.pem" 2>/dev/null
  rm -f "$out/$name.csr" "$out/$name.ext"
  echo "dev_ca.sh: made $out/$name.pem (issuer $ca)" >&2
}

client_ext='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n'
server_ext='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n'
server_ext+='subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n'

make_ca ca "/O=Treasury Orchestrator dev/CN=Treasury dev CA"
make_leaf server ca "/O=Treasury Orchestrator dev/CN=localhost" "$server_ext"
make_leaf client ca "/O=Treasury Orchestrator dev/OU=clients/CN=bank-connector" \
  "${client_ext}subjectAltName=DNS:bank-connector\n"
for name in ${clients[@]+"${clients[@]}"}; do
  make_leaf "$name" ca "/O=Treasury Orchestrator dev/OU=clients/CN=$name" "${client_ext}subjectAltName=DNS:$name\n"
done
service_ext='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n'
for name in ${services[@]+"${services[@]}"}; do
  sans="DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1"
  for ip in ${ips[@]+"${ips[@]}"}; do sans+=",IP:$ip"; done
  make_leaf "$name" ca "/O=Treasury Orchestrator dev/OU=services/CN=$name" "${service_ext}subjectAltName=$sans\n"
done
make_ca rogue-ca "/O=Somebody else/CN=Rogue CA"
make_leaf rogue-client rogue-ca "/O=Somebody else/CN=bank-connector" "${client_ext}subjectAltName=DNS:bank-connector\n"

openssl verify -CAfile "$out/ca.pem" "$out/server.pem" "$out/client.pem" >/dev/null
echo "# TLS front settings for these certificates (eval \"\$(bash scripts/dev_ca.sh)\" to export them)"
echo "export TLS_CERT_FILE=$(realpath "$out/server.pem") TLS_KEY_FILE=$(realpath "$out/server.key")"
echo "export TLS_CLIENT_CA_FILE=$(realpath "$out/ca.pem")"
