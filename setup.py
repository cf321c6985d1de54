"""role_stash: the create-time roles of each instance, for Nova's metadata."""

import pathlib

import setuptools

setuptools.setup(
    name="role_stash",
    version="0.1.0",
    description="Create-time roles of compute instances, kept for the "
                "metadata service's dynamic vendordata",
    long_description=pathlib.Path(__file__).with_name("README.md").read_text(
        encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Environment :: OpenStack",
        "Intended Audience :: Information Technology",
        "Intended Audience :: System Administrators",
        "License :: OSI Approved :: Apache Software License",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Database",
    ],
    python_requires=">=3.10",
    # The root alembic/ folder ships inside the package as
    # role_stash.migrations, so an installed wheel can migrate.
    packages=["role_stash", "role_stash.cmd", "role_stash.conf",
              "role_stash.db", "role_stash.db.dialects", "role_stash.nova",
              "role_stash.migrations",
              "role_stash.migrations.versions"],
    package_dir={"role_stash.migrations": "alembic"},
    package_data={"role_stash.migrations": ["script.py.mako"]},
    install_requires=[
        "SQLAlchemy>=2.0,<3",
        "alembic>=1.13",
        "oslo.db>=16.0.0",
        "oslo.config>=9.0.0",
        "oslo.utils>=7.0.0",
        # role-stash-manage: its logging, as every -manage command's, and
        # `upgrade check`, as nova-status's.
        "oslo.log>=5.0.0",
        "oslo.upgradecheck>=2.0.0",
        # The progress bar of import-nova and delete-orphans on a terminal.
        "tqdm>=4.60",
        # The vendordata drop-in's calls, with Nova's service-token options.
        "keystoneauth1>=5.0.0",
        # Drivers: postgresql+psycopg:// (psycopg 3, what SQLAlchemy 2.1
        # takes for a bare postgresql://), postgresql+psycopg2://,
        # mysql+pymysql://
        "psycopg[binary]>=3.1",
        "psycopg2-binary>=2.9",
        "PyMySQL>=1.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "testing.postgresql>=1.3.0",
            "testresources>=2.0",
            # Property-based tests of bad input (tests/test_bad_input.py).
            "hypothesis>=6.100",
            # The documentation's build and the release notes' check
            # (tests/test_docs.py).
            "sphinx>=7.4",
            "reno>=4.1",
            # The lint of the whole tree (tests/test_lint.py).
            "ruff>=0.6",
        ],
        "benchmark": [
            "pyinstrument>=4",
            "matplotlib>=3.5",
        ],
        # Nova's own modules in the functional tests (tests/nova/), with
        # Keystone's role-name schema as their oracle.
        "nova": [
            "nova>=34,<35",
            "keystone",
            # What Nova's own unit and functional tests import, run on the
            # patched Nova by tests/nova_functional.
            "oslotest",
            "testtools",
            "testscenarios",
            "ddt",
            "wsgi-intercept",
            "openstack-placement",
            "requests-mock",
            "python-barbicanclient",
            "oslo.vmware",
        ],
    },
    entry_points={
        "console_scripts": ["role-stash-manage = role_stash.cmd.manage:main"],
        "oslo.config.opts": ["role_stash = role_stash.conf.opts:list_opts"],
    },
)
