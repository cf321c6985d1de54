"""Sphinx configuration of role_stash's documentation.

Every figure the prose gives that the code defines (limits, defaults, exit
codes, the retry window) is read from role_stash's modules at build time
by the extension in _ext/ and handed to the pages as a substitution, so
the pages cannot drift from the code.
"""

import pathlib
import sys

SOURCE = pathlib.Path(__file__).resolve().parent
ROOT = SOURCE.parent.parent
# The extension, and the benchmarks whose settings the pages name.
sys.path[:0] = [str(SOURCE / "_ext"), str(ROOT)]

import role_stash_docs  # noqa: E402

project = "role_stash"
copyright = "role_stash contributors"
author = "role_stash contributors"

extensions = [
    "sphinx.ext.autodoc",
    "oslo_config.sphinxext",
    "oslo_config.sphinxconfiggen",
    "role_stash_docs",
]

# oslo.config's sample generator writes _static/role_stash.conf.sample at
# build time from the same instructions as etc/role_stash.conf.sample.
config_generator_config_file = [
    (str(ROOT / "etc" / "oslo-config-generator" / "role_stash.conf"),
     "_static/role_stash"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
templates_path = []
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = "role_stash"
html_theme_options = {"description": "The creating user's roles of each "
                                     "instance, kept for Nova's metadata"}
# No "view source" links: they would copy every page into the output.
html_copy_source = False
html_show_sourcelink = False

rst_epilog = role_stash_docs.substitutions()

# The benchmark's results file, shown when a run's is committed (with the
# plot it drew beside it).
role_stash_benchmark_results = str(SOURCE / "_static" / "benchmark.json")
