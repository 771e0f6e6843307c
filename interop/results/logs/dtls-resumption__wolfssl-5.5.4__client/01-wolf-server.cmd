cd /root/.cache/tls13-peers/wolfssl-5.5.4
/root/.cache/tls13-peers/wolfssl-5.5.4/examples/server/server -p 21944 -v 4 -u -c /tmp/tls13-interop-gvqnqp2_/pki/server.pem -k /tmp/tls13-interop-gvqnqp2_/pki/server.key -e -d -r
