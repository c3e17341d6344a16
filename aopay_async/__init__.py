"""aopay_async: an async client for AOPay's GetCreditHistory (a CIBIL credit profile per customer).

::

    async with AOPayClient(company_code="CMP1045", registration_id="AOP-554") as client:
        history = await client.get_credit_history(cibil_id="525234", client_order_id="ord-1")

This module holds the public names only; everything else lives in private modules.
"""

from .__version__ import __version__ as __version__  # re-exported; not in __all__ (a dunder)
from ._client import AOPayClient
from ._errors import (
    AOPayError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    InvalidRequestError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)
from ._models import (
    Account,
    BulkResult,
    CreditAge,
    CreditHistory,
    CreditHistoryRequest,
    CreditMix,
    CreditUtilization,
    UserInfo,
)

__all__ = [
    "AOPayClient",
    "AOPayError",
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "Account",
    "AuthenticationError",
    "BulkResult",
    "CreditAge",
    "CreditHistory",
    "CreditHistoryRequest",
    "CreditMix",
    "CreditUtilization",
    "InvalidRequestError",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "UserInfo",
]
