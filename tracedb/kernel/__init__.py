"""Everything about the running kernel: struct layouts from its BTF, kernel headers
for BCC, tracefs, which probe kinds work, and `tracedb doctor` over all of them."""
