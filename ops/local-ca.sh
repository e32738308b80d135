#!/usr/bin/env bash
# A local certificate authority and a server certificate it signs, for tests and trials of
# Muster's TLS. Not for production: there, certificates come from the organisation's own CA.
#
#   bash ops/local-ca.sh DIR [NAME_OR_IP ...]
#
# In DIR (made when missing, private to its owner):
#   ca.pem, ca-key.pem       the CA: made on the first run, kept by later runs
#   server.pem               the server's certificate: tls_cert (MUSTER_TLS_CERT)
#   server-key.pem           its private key: tls_key (MUSTER_TLS_KEY)
# The server certificate names localhost, 127.0.0.1 and ::1, plus each NAME_OR_IP given. Every
# run makes a new server key and certificate from the same CA, so running it again and sending
# SIGHUP to `muster serve` or `muster gateway` tries a reload. Clients trust the CA with
# --ca-cert DIR/ca.pem or MUSTER_CA_CERT=DIR/ca.pem; curl with --cacert DIR/ca.pem.
#
# Installs Debian's openssl package when the openssl command is missing.
set -euo pipefail

if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0
    exit 2
fi
dir=$1
shift

if ! command -v openssl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq openssl >/dev/null
fi

umask 077
mkdir -p "$dir"
cd "$dir"
work=$(mktemp -d .local-ca.XXXXXX)
trap 'rm -rf "$work"' EXIT

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

if [ ! -s ca.pem ] || [ ! -s ca-key.pem ]; then
    cat >"$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = Muster local test CA
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    new_key "$work/ca-key.pem"
    openssl req -x509 -new -key "$work/ca-key.pem" -config "$work/ca.cnf" -sha256 -days 3650 \
        -out "$work/ca.pem"
    mv "$work/ca-key.pem" ca-key.pem
    mv "$work/ca.pem" ca.pem
    chmod 644 ca.pem
fi

alt="DNS:localhost, IP:127.0.0.1, IP:::1"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        alt="$alt, IP:$name"
    else
        alt="$alt, DNS:$name"
    fi
done
cat >"$work/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $alt
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
new_key "$work/server-key.pem"
openssl req -new -key "$work/server-key.pem" -subj "/CN=${1:-localhost}" -out "$work/server.csr"
openssl x509 -req -in "$work/server.csr" -CA ca.pem -CAkey ca-key.pem \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 825 -extfile "$work/server.ext" \
    -out "$work/server.pem" 2>/dev/null
# A reload between these two moves finds a key and a certificate that do not belong
# together, and keeps the pair it has.
mv "$work/server-key.pem" server-key.pem
mv "$work/server.pem" server.pem
chmod 644 server.pem
echo "CA:          $PWD/ca.pem"
echo "certificate: $PWD/server.pem  ($alt)"
echo "key:         $PWD/server-key.pem"
