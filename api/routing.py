"""The routers' route class: a plain `def` endpoint costs one trip to a worker thread, not two.

FastAPI runs a synchronous endpoint in a worker thread, and then, because the endpoint was
synchronous, validates its answer against the response model in a worker thread again: two hops
there and back per request, each costing more CPU than what it carries (a command's answer is
validated in tens of microseconds; a hop costs over a hundred). `LedgerRoute` hands FastAPI the
endpoint wrapped in a coroutine that runs it in the same thread pool (`run_in_threadpool`, as
FastAPI would, context variables and limiter included); FastAPI then validates and serialises the
answer on the event loop, as it does for every `async def` endpoint. The signature, name and
docstring FastAPI reads are the endpoint's own (`functools.wraps`; FastAPI unwraps to read the
parameters and their annotations), so the OpenAPI document is unchanged."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool


def in_one_thread_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain function endpoint as a coroutine function running it in the thread pool; any other
    endpoint (coroutines, generators streaming an answer, callables) as it is."""
    if not inspect.isfunction(endpoint) or (
        inspect.iscoroutinefunction(endpoint)
        or inspect.isgeneratorfunction(endpoint)
        or inspect.isasyncgenfunction(endpoint)
    ):
        return endpoint

    @functools.wraps(endpoint)
    async def run_in_thread(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return run_in_thread


class LedgerRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, in_one_thread_hop(endpoint), **kwargs)
