# The CLI's exit statuses and its one usage-error type (pip keeps these in
# cli/status_codes.py). Every module of the package imports them from here, so the
# numbers are defined once; this module must never import anything of the CLI's own.
"""Exit statuses of ``aopay-async`` and the usage error that maps to status 2."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """Bad usage found after argument parsing (a file that cannot be read, say): exit 2."""
