"""Real traffic peers the BPF tests run as separate processes (tracedb never
traces its own process): a Python HTTP server and client scripts."""
