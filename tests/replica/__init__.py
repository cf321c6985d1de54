"""Tests on a PostgreSQL streaming replica (a package: its servers stop after its last test)."""
