"""Nova's functional harness (API, conductor, scheduler, computes on the
fake virt driver, placement, cell0 and two cells) on the patched Nova with
[role_stash] enabled: the scenarios of harness/role_stash_in_nova.py, one
process for the module."""

SCENARIOS = 13


def test_role_stash_in_a_whole_nova_with_two_cells(run_nova_tests):
    counts = run_nova_tests("role_stash_in_nova")
    assert counts["selected"] == {"role_stash_in_nova": SCENARIOS}
    assert counts["run"] == SCENARIOS
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0
    assert counts["expected_failures"] == 0
