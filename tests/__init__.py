"""role_stash's tests: a package, so that they import their shared code
(tests.helpers, the fixtures' plugins in tests.fixtures) by name under
--import-mode=importlib, which puts no folder on sys.path."""
