"""Server create, then a metadata GET: what Nova does with role_stash.

Runs on $ROLE_STASH_DATABASE_URL, else the embedded default
sqlite:///role_stash.sqlite, migrated first with `alembic upgrade head`.
"""

import json

from role_stash.db import api

INSTANCE = "6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c"


def main():
    repository = api.StashRepository.from_url()
    # nova-api, server create: the user's token, and so the roles, are here.
    repository.stash_roles(
        INSTANCE, project_id="8d2b4e5c1f9a4b7e9c3d2a1b0e9f8d7c",
        user_id="3c1d2e4f5a6b4c7d8e9f0a1b2c3d4e5f",
        roles=["member", "reader", "load-balancer_member"])
    # nova-metadata, a later GET from the guest: no token, the stash answers.
    stash = repository.get_stash(INSTANCE)
    print(json.dumps(stash.vendordata(), indent=2))
    repository.close()


if __name__ == "__main__":
    main()
