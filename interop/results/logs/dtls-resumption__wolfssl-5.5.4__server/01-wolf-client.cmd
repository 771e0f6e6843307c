cd /root/.cache/tls13-peers/wolfssl-5.5.4
/root/.cache/tls13-peers/wolfssl-5.5.4/examples/client/client -p 20132 -v 4 -u -A /tmp/tls13-interop-gvqnqp2_/pki/ca.pem -x -r --waitTicket
