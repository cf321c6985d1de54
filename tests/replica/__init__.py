"""Tests on a PostgreSQL streaming replica.

A package: its servers stop after its last test."""
