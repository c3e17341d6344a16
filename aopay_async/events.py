"""The event stream's public types, for typing event hooks.

::

    from aopay_async.events import Event, EventKind

    def on_event(event: Event) -> None:
        if event.kind is EventKind.RETRY_SCHEDULED:
            print(event.client_order_id, event.reason, event.delay_seconds)

    AOPayClient(..., event_hooks=[on_event])

This module only re-exports: the event's shape lives in :mod:`aopay_async._events`, its
subscribers in :mod:`aopay_async._observe`.
"""

from __future__ import annotations

from ._events import Event, EventHook, EventKind

__all__ = ["Event", "EventHook", "EventKind"]

for _public in (Event, EventKind):
    _public.__module__ = __name__
del _public
