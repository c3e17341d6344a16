"""aopay_async: an async client for AOPay's GetCreditHistory (a CIBIL credit profile per customer).

::

    async with AOPayClient(company_code="CMP1045", registration_id="AOP-554") as client:
        history = await client.get_credit_history(cibil_id="525234", client_order_id="ord-1")

This module holds the public names only; everything else lives in private modules.
"""

import inspect as _inspect
import typing as _typing

from .__version__ import __version__ as __version__  # re-exported; not in __all__ (a dunder)
from ._breaker import CircuitBreaker
from ._budget import RetryBudget
from ._client import AOPayClient
from ._errors import (
    AOPayError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    CircuitOpenError,
    InvalidRequestError,
    RateLimiterError,
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
from ._redis import RedisLimiter

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
    "CircuitBreaker",
    "CircuitOpenError",
    "CreditAge",
    "CreditHistory",
    "CreditHistoryRequest",
    "CreditMix",
    "CreditUtilization",
    "InvalidRequestError",
    "RateLimitError",
    "RateLimiterError",
    "RedisLimiter",
    "ResponseDecodeError",
    "RetryBudget",
    "ServerError",
    "UserInfo",
]


def _claim(member: type) -> None:
    """Make ``member`` report this package as its home, as httpx does for its public names.

    Tracebacks and reprs then read ``aopay_async.RateLimitError`` rather than a private path, and
    pickle finds the class here. Annotations are resolved first, in the module that wrote them:
    ``typing.get_type_hints`` and msgspec evaluate string annotations (``from __future__ import
    annotations``) in ``sys.modules[member.__module__]``, where ``ClassVar``, ``Decimal`` or
    ``_dt`` would no longer be found.
    """
    own = _inspect.get_annotations(member)
    if own:
        hints = _typing.get_type_hints(member, include_extras=True)
        member.__annotations__ = {name: hints[name] for name in own}
    member.__module__ = __name__


for _name in __all__:
    _claim(globals()[_name])
del _claim, _name
