"""Nova's own unit tests of the code the series changes pass on the
patched Nova, [role_stash] left off as Nova's tests leave it; one process
for all of them."""

# NAME:REGEX (see harness/run_nova_tests.py) -> fewest tests it must run.
SELECTIONS = {
    # instance_destroy
    "nova.tests.unit.db.main.test_api.InstanceTestCase:destroy": 9,
    # ComputeTaskManager.schedule_and_build_instances
    "nova.tests.unit.conductor.test_conductor:schedule_and_build": 21,
    # TargetDBSetupTask, and the confirm and revert tasks that destroy an
    # instance
    "nova.tests.unit.conductor.tasks.test_cross_cell_migrate": 43,
    # InstanceMetadata and its vendordata providers
    "nova.tests.unit.test_metadata.OpenStackMetadataTestCase": 28,
    # nova.conf, with the new group registered
    "nova.tests.unit.test_conf": 3,
}


def test_novas_unit_tests_pass_on_the_patched_nova(run_nova_tests):
    counts = run_nova_tests(*SELECTIONS)
    assert counts["failures"] == counts["errors"] == 0
    for selection, fewest in SELECTIONS.items():
        assert counts["selected"][selection] >= fewest, selection
