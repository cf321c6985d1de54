"""Sphinx configuration of role_stash's release notes, rendered by reno
from releasenotes/notes as OpenStack projects do:
sphinx-build -W -b html releasenotes/source releasenotes/build/html"""

project = "role_stash release notes"
copyright = "role_stash contributors"
extensions = ["reno.sphinxext"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
