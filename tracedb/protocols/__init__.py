"""Protocol parsers: pure functions of bytes to messages, one module per protocol, and the matching of requests with responses."""
