"""Benchmarks of tls13 against OpenSSL (Python ``ssl``, pyOpenSSL) and tlslite-ng.

``python -m bench`` runs everything once in one process and writes bench/results/latest.json;
``--quick`` is a smoke run with tiny counts; ``--profile handshake|bulk`` prints cProfile's top
entries for our code; ``--scale`` runs the socket-level server tests (openssl s_time, idle
connections). See bench/README.md for what each figure means and how it is measured.
"""
