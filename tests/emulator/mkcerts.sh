#!/bin/sh
# mkcerts.sh DIR - the emulator's test CA and certificates (EC P-256, valid ~10 years).
#
#   ca.pem/ca.key                "btprelay test CA"
#   server.pem/server.key        HTTPS services: DNS:localhost, IP:127.0.0.1, DNS:*.localhost,
#                                DNS:provider.localhost, DNS:subscriber1.localhost
#   relay.pem/relay.key          SMTP relay: DNS:mail.corp.internal, DNS:localhost, IP:127.0.0.1
#   wrongname.pem/wrongname.key  signed by the CA, but only DNS:other.example
#   selfsigned.pem/.key          the relay's names, but self-signed (not from the CA)
#   expired.pem/expired.key      the relay's names, signed by the CA, expired (2020-2021)
#   client.pem/client.key        a client certificate (for mutual-TLS tests; the one
#                                registered for the X.509 bindings)
#   client2.pem/client2.key      another client certificate from the CA, not registered
#   .mkcerts-version             "2"; the emulator remakes a set without it (or older)
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

relay_names="DNS:mail.corp.internal, DNS:localhost, IP:127.0.0.1"
# OpenSSL does not match "*.localhost" (a wildcard needs two labels after it), hence
# the explicit names beside it.
leaf server localhost \
    "DNS:localhost, IP:127.0.0.1, DNS:*.localhost, DNS:provider.localhost, DNS:subscriber1.localhost" \
    serverAuth
leaf relay mail.corp.internal "$relay_names" serverAuth
leaf wrongname other.example "DNS:other.example" serverAuth
leaf client "btprelay test client" "DNS:btprelay-client" clientAuth
leaf client2 "btprelay other client" "DNS:btprelay-client2" clientAuth

# selfsigned: the relay's names, signed with its own key.
newkey "$work/selfsigned.key"
openssl req -new -x509 -config "$work/relay.cnf" -extensions leaf_ext -key "$work/selfsigned.key" \
    -sha256 -days "$days" -set_serial "$(serial)" -out "$work/selfsigned.pem" 2>/dev/null \
    || openssl req -new -x509 -config "$work/relay.cnf" -key "$work/selfsigned.key" -sha256 \
        -days "$days" -set_serial "$(serial)" -addext "subjectAltName = $relay_names" \
        -out "$work/selfsigned.pem"

# expired: the relay's names, signed by the CA, valid from 2020-01-01 to 2021-01-01.
# "openssl x509 -req" cannot back-date a certificate; "openssl ca" can.
newkey "$work/expired.key"
mkdir "$work/ca-db"
: >"$work/ca-db/index.txt"
openssl rand -hex 12 >"$work/ca-db/serial"
cat >"$work/expired.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = mail.corp.internal
[ca]
default_ca = test_ca
[test_ca]
database = $work/ca-db/index.txt
new_certs_dir = $work/ca-db
serial = $work/ca-db/serial
default_md = sha256
policy = any_policy
unique_subject = no
[any_policy]
commonName = supplied
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $relay_names
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
openssl req -new -config "$work/expired.cnf" -key "$work/expired.key" -out "$work/expired.csr"
openssl ca -batch -config "$work/expired.cnf" -cert "$work/ca.pem" -keyfile "$work/ca.key" \
    -startdate 20200101000000Z -enddate 20210101000000Z -extensions leaf_ext \
    -notext -in "$work/expired.csr" -out "$work/expired.pem" 2>/dev/null

names="server relay wrongname selfsigned expired client client2"
for name in $names ca; do
    chmod 600 "$work/$name.key"
    chmod 644 "$work/$name.pem"
    mv -f "$work/$name.key" "$dir/$name.key"
done
for name in $names; do
    mv -f "$work/$name.pem" "$dir/$name.pem"
done
echo 2 >"$work/.mkcerts-version"
chmod 644 "$work/.mkcerts-version"
mv -f "$work/.mkcerts-version" "$dir/.mkcerts-version"
mv -f "$work/ca.pem" "$dir/ca.pem"
