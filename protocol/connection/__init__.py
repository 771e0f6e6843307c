"""The Sans-IO connections: TLS and DTLS, client and server, and the DTLS server that
multiplexes associations behind one socket."""
