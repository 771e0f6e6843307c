"""RFC 9147 helpers that know nothing of a connection: handshake fragments and reassembly,
flights, Connection IDs, stateless cookies."""
