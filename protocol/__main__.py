"""``python -m protocol``: see protocol.cli.main."""

from protocol.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
