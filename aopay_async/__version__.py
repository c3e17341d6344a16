# The package's version, and nothing else.
# Owns: the one place the release number is written (hatch reads it from here for the wheel,
# `_client` reads it for the User-Agent, the package `__init__` re-exports it).
# Must never: import anything, from the package or elsewhere — every other module may import
# this one, so an import here would be a cycle waiting to happen (httpx keeps httpx/__version__.py
# for the same reason).
__title__ = "aopay-async"
__version__ = "0.1.0"
