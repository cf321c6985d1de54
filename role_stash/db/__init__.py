"""The database part: the repository (api), the per-dialect statements, the
engines and their retries and error translation, archive and purge, the
models with the frozen types their revisions import, and the migrations'
runner. Everything of role_stash that builds SQL is here."""
