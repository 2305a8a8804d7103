"""The client's layers called directly over MemFS (a real filesystem, no mount): a layer forwards
what it does not handle, and the caching layer forgets exactly what each operation changes."""

from __future__ import annotations

import inspect
import os
import stat

import pytest

from bridgefs.client.attrs import AttrCache
from bridgefs.client.cache_policy import CachePolicy
from bridgefs.client.caching import CHANGES, CachingLayer
from bridgefs.client.invalidate import KernelNotifier
from bridgefs.client.layer import INTERFACE, Layer
from bridgefs.client.listings import Listings
from bridgefs.client.names import NameTable
from bridgefs.client.read_ahead import ReadAhead
from bridgefs.fuse.filesystem import ROOT_ID, Context, FileSystem, SetAttr
from bridgefs.memfs import MemFS

CTX = Context()


def caching_over(fs: FileSystem) -> CachingLayer:
    policy = CachePolicy()
    policy.use_long(True)
    names = NameTable()
    attrs = AttrCache()
    listings = Listings(lambda: 3600.0, lambda: 3600.0, lambda h: None, lambda h: None)
    ahead = ReadAhead(lambda inos, most, total: [None] * len(inos), names, attrs, KernelNotifier())
    return CachingLayer(fs, policy, names, listings, ahead, attrs)


def test_a_layer_forwards_every_method_of_the_interface():
    calls = []

    class Recording(FileSystem):
        pass

    inner = Recording()
    for name in INTERFACE:
        setattr(inner, name, lambda *a, _name=name, **k: calls.append(_name) or _name)
    layer = Layer(inner)
    for name in INTERFACE:
        params = list(inspect.signature(getattr(FileSystem, name)).parameters)[1:]
        assert getattr(layer, name)(*range(len(params))) == name
    assert calls == list(INTERFACE)


def test_the_change_table_names_real_arguments():
    for op, changes in CHANGES.items():
        params = inspect.signature(getattr(FileSystem, op)).parameters
        for arg, _ in changes:
            assert arg in params, (op, arg)
        assert op not in vars(CachingLayer) or vars(CachingLayer)[op].__doc__.startswith(op), op


@pytest.fixture
def layer():
    return caching_over(MemFS())


def _file(layer: CachingLayer, name: bytes) -> tuple[int, int]:
    entry, opened = layer.create(CTX, ROOT_ID, name, stat.S_IFREG | 0o644, 0o022, os.O_RDWR)
    return entry.ino, opened.fh


def test_attributes_are_answered_again_until_an_operation_changes_them(layer):
    ino, fh = _file(layer, b"f")
    inner_getattr = layer.inner.getattr
    asked = []
    layer.inner.getattr = lambda *a: asked.append(a) or inner_getattr(*a)
    assert layer.getattr(CTX, ino, None).attr.size == 0
    assert not asked  # the create's answer is remembered
    for change in (
        lambda: layer.write(CTX, ino, fh, 0, b"hello", 0),
        lambda: layer.fallocate(CTX, ino, fh, 0, 4096, 0),
        lambda: layer.setxattr(CTX, ino, b"user.k", b"v", 0),
        lambda: layer.removexattr(CTX, ino, b"user.k"),
    ):
        change()
        before = len(asked)
        fresh = inner_getattr(CTX, ino, None).attr
        assert layer.getattr(CTX, ino, None).attr == fresh
        assert len(asked) == before + 1  # asked again: the change dropped it
        layer.getattr(CTX, ino, None)
        assert len(asked) == before + 1  # and then remembered


def test_setattr_answers_with_the_new_attributes(layer):
    ino, fh = _file(layer, b"g")
    reply = layer.setattr(CTX, ino, SetAttr(size=10), fh)
    assert reply.attr.size == 10
    assert layer.getattr(CTX, ino, None).attr.size == 10


def test_an_invalidation_drops_attributes_and_an_answer_fetched_across_it(layer):
    ino, _ = _file(layer, b"h")
    since = layer.attrs.generation
    layer.drop_node(ino)
    layer.attrs.keep(ino, layer.inner.getattr(CTX, ino, None).attr, since)
    assert layer.attrs.get(ino) is None  # fetched before the invalidation: not kept


def test_short_caches_answer_nothing_themselves(layer):
    ino, fh = _file(layer, b"i")
    layer.policy.use_long(False)
    layer.inner.write(CTX, ino, fh, 0, b"behind its back", 0)
    assert layer.getattr(CTX, ino, None).attr.size == len(b"behind its back")
