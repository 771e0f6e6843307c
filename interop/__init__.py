"""Interop harness: the real TLS/DTLS peers (installed by setup_peers.sh) and how to find them."""
