"""The guide "Running inside Nova" (doc/source/admin/running-inside-nova.rst),
run with Nova's own code: the functions of examples/nova_integration.py,
which the guide includes."""

import importlib.util
import pathlib

from nova import context as nova_context
from nova import objects
from oslo_db import exception as db_exc
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash import nova as role_stash_nova

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUIDE = ROOT / "examples" / "nova_integration.py"


def load_guide():
    spec = importlib.util.spec_from_file_location("nova_integration", GUIDE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guide = load_guide()


def new_instance(cell_context, user_context, instance_uuid, **fields):
    """An Instance of the user's, in the cell, not yet created."""
    return objects.Instance(
        context=cell_context, uuid=instance_uuid,
        project_id=user_context.project_id, user_id=user_context.user_id,
        **fields)


def test_the_guides_create_metadata_get_and_delete(
        cell, nova_context_manager, user_context, new_uuid):
    instance_uuid = new_uuid()
    with nova_context.target_cell(user_context, cell) as cell_context:
        instance = new_instance(cell_context, user_context, instance_uuid,
                                hostname="guest", vm_state="building")
        guide.create_instance(cell_context, instance)
    # The metadata service: an admin context with no user, no roles and
    # no token, targeted at the instance's cell.
    admin = nova_context.get_admin_context()
    with nova_context.target_cell(admin, cell) as cell_admin:
        assert guide.vendordata_fields(cell_admin, instance_uuid) == {
            "project-id": user_context.project_id,
            "instance-id": instance_uuid,
            "boot-roles": "member,reader"}
        assert guide.vendordata_fields(cell_admin, new_uuid()) is None
    with nova_context.target_cell(user_context, cell) as cell_context:
        found = objects.Instance.get_by_uuid(cell_context, instance_uuid)
        guide.destroy_instance(cell_context, found)
        assert guide.vendordata_fields(cell_context, instance_uuid) is None
        engine = nova_context.CELL_CACHE[cell.uuid][0].writer.get_engine()
        with engine.connect() as connection:
            assert connection.scalar(sa.text(
                "SELECT COUNT(*) FROM instances WHERE uuid = :uuid "
                "AND deleted = 0"), {"uuid": instance_uuid}) == 0
        # An instance created before role_stash: its delete is fine too.
        older = new_instance(cell_context, user_context, new_uuid())
        older.create()
        guide.destroy_instance(cell_context, older)


def test_a_failing_create_leaves_neither_row_nor_stash(
        cell, nova_context_manager, user_context, new_uuid):
    instance_uuid = new_uuid()
    with nova_context.target_cell(user_context, cell) as cell_context:
        new_instance(cell_context, user_context, instance_uuid).create()
        duplicate = new_instance(cell_context, user_context, instance_uuid)
        with pytest.raises(db_exc.DBDuplicateEntry):
            guide.create_instance(cell_context, duplicate)
        with pytest.raises(exception.StashNotFound):
            role_stash_nova.repository_for(cell_context).get_stash(
                instance_uuid)


def test_the_guide_includes_the_functions_run_here():
    """The documentation shows these very functions: it includes them from
    the example file (a build fails on a function that is not there)."""
    page = (ROOT / "doc" / "source" / "admin"
            / "running-inside-nova.rst").read_text()
    for name in ("create_instance", "vendordata_fields", "destroy_instance"):
        assert f":pyobject: {name}\n" in page
