"""The socket tracer: TCP connections, conn_stats and protocol traces.

events.py mirrors the kernel's event structs; streams.py reassembles each
direction of a connection; connection.py holds what is known of one
connection; protocols.py binds protocol parsers (tracedb.protocols) to
their tables; conn_stats.py aggregates byte counts; connector.py loads
bpf/socket_tracer/ and drives it all.
"""
