"""The guest side: a FileSystem answered by a bridgefs server over gRPC."""

from bridgefs.client.remote import RemoteFileSystem

__all__ = ["RemoteFileSystem"]
