"""Tests on a MariaDB Galera cluster (a package: its cluster stops after its last test)."""
