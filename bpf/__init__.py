"""The BPF C programs, one folder per connector; compiled by BCC on the node, so shipped as package data."""
