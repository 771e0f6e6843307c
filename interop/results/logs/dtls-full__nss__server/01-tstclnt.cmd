cd /work/main
/root/.cache/tls13-peers/nss-3.132/usr/bin/tstclnt -P client -4 -h 127.0.0.1 -p 23348 -a localhost -d sql:/tmp/tls13-interop-gvqnqp2_/shared/nssdb -V tls1.3:tls1.3 -I x25519,P256,P384,P521
