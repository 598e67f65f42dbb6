"""What a registry request fails with: each becomes a row in the errors table."""

from ..findings import SourceError


class RegistryError(SourceError):
    """A typed failure talking to a registry; becomes a row in the errors table."""


class ListingTruncated(RegistryError):
    """A listing stopped at a cap: `items` are the names read so far, never a complete listing."""

    def __init__(self, message, items, **where):
        super().__init__(message, code="LISTING_TRUNCATED", **where)
        self.items = items
