"""Testing support: a faithful local AOPay server (the sandbox) and a pytest plugin.

This package owns :class:`SandboxServer` (the fake API), the synthetic customers it serves
and the pytest fixtures (``aopay_sandbox``, ``aopay_sandbox_factory``, ``aopay_client``,
registered through the ``pytest11`` entry point). It must never be imported by the client
library itself, and it never reaches beyond 127.0.0.1 unless told to bind elsewhere.
"""

from __future__ import annotations

from ._customers import CustomerProfile, SyntheticAccount, make_customer
from ._faults import FAULTS, OUTCOMES, FaultSchedule
from ._sandbox import DEFAULT_COMPANY_CODE, DEFAULT_REGISTRATION_ID, PATH, SandboxServer
from ._sandbox_stats import SandboxStats
from ._serve import add_arguments as add_sandbox_arguments
from ._serve import serve as serve_sandbox

__all__ = [
    "DEFAULT_COMPANY_CODE",
    "DEFAULT_REGISTRATION_ID",
    "FAULTS",
    "OUTCOMES",
    "PATH",
    "CustomerProfile",
    "FaultSchedule",
    "SandboxServer",
    "SandboxStats",
    "SyntheticAccount",
    "add_sandbox_arguments",
    "make_customer",
    "serve_sandbox",
]
