"""bridgefs: share host folders into Linux VMs and containers."""

# The release, defined here only: pyproject.toml reads it for the package metadata.  The wire
# protocol has a number of its own (bridgefs.rpc.PROTOCOL_VERSION) that releases need not change.
__version__ = "0.1.0"
