"""The `edge-classify` command line."""
