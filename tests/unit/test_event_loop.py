"""The notifier and the relay run on uvloop (installed with uvicorn[standard]), as `serve` does."""

from __future__ import annotations

import asyncio

from dealflow import event_loop


def test_a_service_s_main_runs_on_uvloop_and_its_result_comes_back() -> None:
    async def main() -> str:
        await asyncio.to_thread(lambda: None)  # the notifier's store calls run in threads
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(main()).startswith("uvloop")
