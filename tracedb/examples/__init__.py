"""Example files shipped with tracedb (package data): `schedule.toml`, a schedule of useful summaries."""
