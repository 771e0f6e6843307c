"""handshake package."""
