"""registry ledger: an append-only, tamper-evident history of container registry tags."""

__version__ = "0.1.0"
