"""An asyncio producer (what a FastAPI or aiohttp handler would do): many reports at
once, their results awaited together."""

from __future__ import annotations

import asyncio

from myapp.tasks import render

import dtq


async def main() -> None:
    async with dtq.connect_async() as conn:
        refs = await asyncio.gather(
            *(conn.enqueue(render, {"day": f"2026-12-{d:02d}", "pages": d}) for d in range(1, 8))
        )
        results = await asyncio.gather(*(ref.result(timeout=60) for ref in refs))
        print("pages:", sum(int(str(r["pages"])) for r in results))


if __name__ == "__main__":
    asyncio.run(main())
