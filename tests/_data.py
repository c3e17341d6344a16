"""The test data every test file shares, defined once: the seed's bodies and the credentials.

Owns: the paths and bytes of ``tests/fixtures/`` and the company code / registration id the
tests send. Must never: hold real customer data or real credentials (the bodies are the API
documentation's synthetic example; the credentials are the sandbox's defaults, which it
accepts and nothing else does), or do more than read files at import.
"""

from __future__ import annotations

import pathlib

from aopay_async.testing import DEFAULT_COMPANY_CODE, DEFAULT_REGISTRATION_ID

__all__ = [
    "COMPANY",
    "CREDENTIALS_ENV",
    "FIXTURES",
    "REGISTRATION",
    "SEED_401",
    "SEED_GATEWAY",
    "SEED_SUCCESS",
    "SEED_TRUNCATED",
]

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"

#: The API documentation's success example (3 accounts), byte for byte.
SEED_SUCCESS = (FIXTURES / "seed_success.json").read_bytes()
#: The success example cut off before its closing braces: not valid JSON.
SEED_TRUNCATED = (FIXTURES / "seed_success_truncated.txt").read_bytes()
#: The gateway's ``code``/``description`` error shape.
SEED_GATEWAY = (FIXTURES / "seed_gateway_207.json").read_bytes()
#: The ``responsecode: 401`` shape.
SEED_401 = (FIXTURES / "seed_401.json").read_bytes()

#: The credentials the tests send: the sandbox's defaults, so a client built with them is accepted.
COMPANY: str = DEFAULT_COMPANY_CODE
REGISTRATION: str = DEFAULT_REGISTRATION_ID
#: The same credentials as the environment variables the client and the CLI read.
CREDENTIALS_ENV = {"AOPAY_COMPANY_CODE": COMPANY, "AOPAY_REGISTRATION_ID": REGISTRATION}
