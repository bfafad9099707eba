#!/bin/sh
# mkcerts.sh DIR - the emulator's test CA and certificates (EC P-256, valid ~10 years).
#
#   ca.pem/ca.key                "btprelay test CA"
#   server.pem/server.key        HTTPS services: DNS:localhost, IP:127.0.0.1
#   relay.pem/relay.key          SMTP relay: DNS:mail.corp.internal, DNS:localhost, IP:127.0.0.1
#   wrongname.pem/wrongname.key  signed by the CA, but only DNS:other.example
#   client.pem/client.key        a client certificate (for mutual-TLS tests)
#
# Everything is made in a scratch directory and moved into DIR at the end, ca.pem last:
# a DIR with ca.pem in it is complete. Keys are 0600. Only the openssl CLI is used, with
# its own config files, so whatever openssl.cnf the system has does not matter.
set -eu

dir=${1:?usage: mkcerts.sh DIR}
command -v openssl >/dev/null 2>&1 || { echo "mkcerts.sh: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
umask 077
work=$(mktemp -d "$dir/.mkcerts.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
days=3650

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

serial() {
    echo "0x$(openssl rand -hex 12)"
}

# The CA.
cat >"$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
CN = btprelay test CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
newkey "$work/ca.key"
openssl req -new -x509 -config "$work/ca.cnf" -key "$work/ca.key" -sha256 \
    -days "$days" -set_serial "$(serial)" -out "$work/ca.pem"

# leaf NAME COMMON_NAME SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE
leaf() {
    name=$1 cn=$2 san=$3 eku=$4
    cat >"$work/$name.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $cn
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    newkey "$work/$name.key"
    openssl req -new -config "$work/$name.cnf" -key "$work/$name.key" -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -set_serial "$(serial)" -days "$days" -sha256 \
        -extfile "$work/$name.cnf" -extensions leaf_ext -out "$work/$name.pem" 2>/dev/null
}

leaf server localhost "DNS:localhost, IP:127.0.0.1" serverAuth
leaf relay mail.corp.internal "DNS:mail.corp.internal, DNS:localhost, IP:127.0.0.1" serverAuth
leaf wrongname other.example "DNS:other.example" serverAuth
leaf client "btprelay test client" "DNS:btprelay-client" clientAuth

for name in server relay wrongname client ca; do
    chmod 600 "$work/$name.key"
    chmod 644 "$work/$name.pem"
    mv -f "$work/$name.key" "$dir/$name.key"
done
for name in server relay wrongname client ca; do
    mv -f "$work/$name.pem" "$dir/$name.pem"
done
