cd /work/main
/root/.cache/tls13-peers/mbedtls-3.6.7/build/programs/ssl/ssl_server2 server_addr=127.0.0.1 server_port=21680 crt_file=/tmp/tls13-interop-gvqnqp2_/pki/server.pem key_file=/tmp/tls13-interop-gvqnqp2_/pki/server.key ca_file=/tmp/tls13-interop-gvqnqp2_/pki/ca.pem force_version=tls13 auth_mode=none
