"""bridgefs: share host folders into Linux VMs and containers."""

__version__ = "0.1.0"
