from bridgefs.fuse.lookups import LookupCounts


def test_forget_reports_what_was_handed_out_when_the_kernel_lets_go():
    c = LookupCounts()
    c.add(5)
    c.add(5)
    assert c.drop(5, 1) == 0
    assert c.drop(5, 1) == 2
    assert c.get(5) == 0 and len(c) == 0


def test_an_entry_still_on_its_way_is_not_returned():
    c = LookupCounts()
    c.add(7)
    # A lookup of node 7 is being answered while the kernel forgets its one reference: the
    # filesystem is told one, and the reference the lookup is about to hand out stays its own.
    assert c.drop(7, 1) == 1
    c.add(7)
    assert c.drop(7, 1) == 1


def test_root_and_unknown_nodes_are_never_forgotten():
    c = LookupCounts()
    c.add(1)
    assert c.drop(1, 1) == 0
    assert c.drop(99, 3) == 0
