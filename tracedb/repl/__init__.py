"""The interactive SQL REPL (`tracedb`, `tracedb repl`).

- sqltext.py    reading SQL text: tokens, statement ends, table references
- catalog.py    the names known: schema files plus the live DuckDB catalog
- completion.py what may go at the cursor: a pure function, no terminal
- commands.py   the meta commands (.tables, .mode, ...), a registry; .help from it
- session.py    the state and handle_line(): everything but the terminal
- source.py     the query source protocol: a Collector, or exported files
- app.py        the prompt_toolkit loop around a session
"""
