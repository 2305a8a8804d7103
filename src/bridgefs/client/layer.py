"""A FileSystem in front of another: the client is a stack of these, each with one job.

``Layer`` forwards every operation and life-cycle call of the FileSystem interface to ``inner``;
a layer defines only the operations its job is about.  The forwarders are made from the
interface itself, so an operation added to FileSystem reaches the bottom of the stack without
any layer knowing of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from bridgefs.fuse.filesystem import FileSystem

# Every method of the interface, operations and life cycle alike.
INTERFACE = tuple(
    name
    for name, member in vars(FileSystem).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


class Layer(FileSystem):
    def __init__(self, inner: FileSystem):
        self.inner = inner
        # (Fixed once the filesystem behind is made: the kernel is told at mount.)
        self.opens = inner.opens
        self.read_only = inner.read_only


def _forwarder(name: str) -> Callable[..., Any]:
    def forward(self: Layer, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"Forwarded to the inner filesystem's {name}."
    return forward


for _name in INTERFACE:
    setattr(Layer, _name, _forwarder(_name))
