"""Tests on a MariaDB Galera cluster.

A package: its cluster stops after its last test."""
