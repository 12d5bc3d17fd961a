"""chancy's job function (chancy imports it by module path)."""

from __future__ import annotations

import asyncio

import common


async def noop(i: int) -> None:
    common.mark(i)
    await asyncio.sleep(0)
