"""The `tls13` / `python -m protocol` command line: options, client, server, report, demo."""
