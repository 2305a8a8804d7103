"""The FUSE kernel protocol, spoken over /dev/fuse without libfuse."""
