"""Storage-level errors; the apiserver turns them into Status responses."""


class StorageError(Exception):
    """Base class of every error the store raises."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or key)
        self.key = key


class NotFound(StorageError):
    """The key does not exist."""


class AlreadyExists(StorageError):
    """A create found the key already present."""


class Conflict(StorageError):
    """A compare-and-swap found another resourceVersion."""


class Expired(StorageError):
    """The requested resourceVersion was compacted away (410)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__("", f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class TooLargeResourceVersion(StorageError):
    """The requested resourceVersion is newer than the store has caught up to (504)."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__("", f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


class Unavailable(StorageError):
    """etcd cannot be reached."""
