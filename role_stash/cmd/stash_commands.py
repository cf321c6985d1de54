"""role-stash-manage's commands on one stash or a page of them: stash,
show, list, delete."""

import json

from role_stash.cmd import common
from role_stash.cmd.common import args


def stash_payload(stash):
    """A Stash as a JSON object."""
    payload = stash._asdict()
    payload["roles"] = list(stash.roles)
    for key in ("created_at", "updated_at"):
        if payload[key] is not None:
            payload[key] = payload[key].isoformat()
    return payload


def _stash_text(stash):
    return "\n".join([
        f"instance_uuid:     {stash.instance_uuid}",
        f"project_id:        {stash.project_id}",
        f"user_id:           {stash.user_id}",
        f"project_domain_id: {stash.project_domain_id or '-'}",
        f"user_domain_id:    {stash.user_domain_id or '-'}",
        f"roles:             "
        f"{json.dumps(list(stash.roles), ensure_ascii=False)}",
        f"created_at:        {stash.created_at.isoformat()}",
        f"updated_at:        "
        f"{stash.updated_at.isoformat() if stash.updated_at else '-'}",
    ])


@args("instance_uuid")
@args("--project-id", required=True)
@args("--user-id", required=True)
@args("--role", action="append", default=[],
      help="a role name; repeat for each role")
@args("--project-domain-id")
@args("--user-domain-id")
@args("--replace", action="store_true",
      help="overwrite a different live stash")
def stash(arguments, context_manager):
    """Stash an instance's roles (as Nova does at server create)."""
    stashed = common.repository(arguments, context_manager).stash_roles(
        arguments.instance_uuid, project_id=arguments.project_id,
        user_id=arguments.user_id, roles=arguments.role,
        project_domain_id=arguments.project_domain_id,
        user_domain_id=arguments.user_domain_id, replace=arguments.replace)
    common.answer(arguments, stash_payload(stashed), _stash_text(stashed))
    return common.OK


@args("instance_uuid")
@args("--vendordata", action="store_true",
      help="print the vendordata fields")
def show(arguments, context_manager):
    """Print an instance's stash, or the vendordata fields made of it."""
    found = common.repository(arguments, context_manager).get_stash(
        arguments.instance_uuid)
    if arguments.vendordata:
        fields = found.vendordata()
        common.answer(arguments, fields, "\n".join(
            f"{key}: {value}" for key, value in fields.items()))
    else:
        common.answer(arguments, stash_payload(found), _stash_text(found))
    return common.OK


@args("--project-id")
@args("--role")
@args("--marker")
@args("--limit", type=int)
def list_stashes(arguments, context_manager):
    """Print live stashes of a project and/or with a role, one page."""
    found = common.repository(arguments, context_manager).list_stashes(
        project_id=arguments.project_id, role=arguments.role,
        marker=arguments.marker, limit=arguments.limit)
    common.answer(arguments, [stash_payload(item) for item in found],
                  "\n".join(f"{item.instance_uuid}  {item.project_id}  "
                            + json.dumps(list(item.roles), ensure_ascii=False)
                            for item in found))
    return common.OK


@args("instance_uuid")
def delete(arguments, context_manager):
    """Soft-delete an instance's stash."""
    common.repository(arguments, context_manager).delete_stash(
        arguments.instance_uuid)
    common.answer(arguments, {"deleted": arguments.instance_uuid},
                  f"deleted the stash of {arguments.instance_uuid}")
    return common.OK


COMMANDS = {"stash": stash, "show": show, "list": list_stashes,
            "delete": delete}
