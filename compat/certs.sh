#!/usr/bin/env bash
# Makes the TLS files for a Freshet broker with SSL / SASL_SSL listeners, with nothing but the
# openssl command line: a private CA, a broker certificate it signs, and client certificates
# for mutual TLS. compat/secure.sh runs it at test time (no key is ever committed), and
# docs/SECURITY.md quotes these commands as the walk-through.
#
#   bash compat/certs.sh DIR [CLIENT...]     (CLIENT names default to: alice)
#
# Writes, all PEM, keys PKCS#8 and unencrypted (mode 600):
#   DIR/ca.crt, DIR/ca.key            the CA (v3, basicConstraints=CA:TRUE)
#   DIR/broker.crt, DIR/broker.key    the broker (SANs DNS:localhost, IP:127.0.0.1; serverAuth)
#   DIR/CLIENT.crt, DIR/CLIENT.key    one per client (CN=CLIENT, clientAuth): with
#                                     `--tls-client-ca DIR/ca.crt` the broker's principal for
#                                     it is User:CLIENT
# The broker then runs with --tls-cert DIR/broker.crt --tls-key DIR/broker.key
# [--tls-client-ca DIR/ca.crt]; clients trust DIR/ca.crt.
# Knobs: CERT_DAYS (default 30), BROKER_CN (default localhost), BROKER_SANS (default
#        DNS:localhost,IP:127.0.0.1; add the names clients use to reach the broker).
set -euo pipefail

DIR="${1:?usage: $0 DIR [CLIENT...]}"
shift
CLIENTS=("$@")
[[ ${#CLIENTS[@]} -gt 0 ]] || CLIENTS=(alice)
DAYS="${CERT_DAYS:-30}"
BROKER_CN="${BROKER_CN:-localhost}"
BROKER_SANS="${BROKER_SANS:-DNS:localhost,IP:127.0.0.1}"

mkdir -p "$DIR"
cd "$DIR"
umask 077 # the keys are readable by their owner only

# 1. The CA: a key and a self-signed v3 certificate marked as a CA (rustls/webpki refuses a
#    CA certificate without basicConstraints=CA:TRUE, and any v1 certificate).
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" \
    -subj "/CN=Freshet test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt

# 2. The broker: a key, a certificate request, and the CA's signature with the v3 extensions
#    clients check: the names they connect to (subjectAltName; the CN is not enough) and
#    serverAuth.
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out broker.key
openssl req -new -key broker.key -subj "/CN=$BROKER_CN" -out broker.csr
cat >broker.ext <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$BROKER_SANS
EOF
openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -sha256 -days "$DAYS" -extfile broker.ext -out broker.crt

# 3. One certificate per client, the same way with clientAuth; its CN is the user name.
for name in "${CLIENTS[@]}"; do
    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
    cat >"$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -sha256 -days "$DAYS" -extfile "$name.ext" -out "$name.crt"
done

# 4. The certificates are public: let clients run as other users read them.
chmod 644 ./*.crt
rm -f ./*.csr ./*.ext ca.srl

# 5. Check what was made: each certificate verifies against the CA.
openssl verify -CAfile ca.crt broker.crt "${CLIENTS[@]/%/.crt}"
