"""The table schemas (one TOML file per table); read at run time, so shipped as package data."""
