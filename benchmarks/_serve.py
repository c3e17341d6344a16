"""The fallback benchmark server, run as a child process by :mod:`benchmarks._servers`.

``python -m benchmarks._serve --kind sandbox|minimal`` binds 127.0.0.1 on free ports,
prints one JSON line with the base URLs, and serves until its stdin closes. ``sandbox``
runs two no-fault :class:`aopay_async.testing.SandboxServer` instances (3 and 100 accounts
per customer); when the sandbox cannot be imported it falls back to ``minimal``: one
``aiohttp.web`` app that answers every request with the fixed 3- or 100-account body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aiohttp import web

from ._bodies import body_for
from ._servers import PATH


async def _minimal() -> tuple[dict[str, str], Any]:
    bodies = {3: body_for(3), 100: body_for(100)}

    def handler(accounts: int) -> Any:
        body = bodies[accounts]

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=body, content_type="application/json")

        return handle

    app = web.Application()
    app.router.add_get(PATH, handler(3))
    app.router.add_get("/a100" + PATH, handler(100))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    info = {
        "kind": "minimal",
        "url3": base,
        "url100": base + "/a100",
        "describe": "minimal aiohttp.web server (fixed bodies) in a child process",
    }
    return info, runner.cleanup


async def _sandbox() -> tuple[dict[str, str], Any]:
    from aopay_async.testing import SandboxServer

    small = SandboxServer(accounts=3, track_ids=False)
    large = SandboxServer(accounts=100, track_ids=False)
    await small.start()
    await large.start()

    async def close() -> None:
        await small.close()
        await large.close()

    info = {
        "kind": "sandbox",
        "url3": small.url,
        "url100": large.url,
        "describe": "aopay_async.testing.SandboxServer, no faults, 3 and 100 accounts per "
        "customer, in a child process",
    }
    return info, close


async def _main(kind: str) -> None:
    if kind == "sandbox":
        try:
            info, close = await _sandbox()
        except ImportError:
            info, close = await _minimal()
    else:
        info, close = await _minimal()
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes stdin
    await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["sandbox", "minimal"], default="sandbox")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        try:
            import uvloop

            uvloop.run(_main(args.kind))
            return
        except ImportError:
            pass
    asyncio.run(_main(args.kind))


if __name__ == "__main__":
    main()
