"""Connectors: the data sources. The interface is in base.py, the registry in
registry.py, and each built-in connector in a module of its own."""
