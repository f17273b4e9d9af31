"""Call a grpc.aio service through seawall's aio channel wrapper.

A ``shop.Pricing`` service on 127.0.0.1 (grpc.aio server, raw bytes, no
generated code) stalls for two seconds on the first try of every fourth
request. The attempt timeout (0.2 s) cuts the stalled try and the retry
answers; a caller that cancels its own call is not counted as a failure;
and while the service is down the fallback answers from a cache.
(``sw_grpc.aio_client_interceptors`` passed as the channel's
``interceptors=`` applies the same policy, at grpc.aio's interceptor cost.)

Run: python examples/grpc_aio.py
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import grpc.aio

import seawall
from seawall.interceptors import grpc as sw_grpc

seen: Counter[bytes] = Counter()
down = False


async def get_price(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    seen[request] += 1
    if down:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "pricing is down")
    if seen[request] == 1 and int(request) % 4 == 0:
        await asyncio.sleep(2.0)  # a stall: the attempt timeout cuts it
    return b"price:" + request


pricing = seawall.IntegrationPoint(
    "pricing",
    retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(initial=0.02, maximum=0.2)),
    breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=20, open_for=30.0),
    timeout=seawall.Timeout(attempt=0.2, total=1.5),
    fallback=seawall.Fallback(value=b"price:cached"),
)


async def main() -> None:
    global down
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shop.Pricing", {
        "GetPrice": grpc.unary_unary_rpc_method_handler(get_price)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with sw_grpc.aio_resilient_channel(grpc.aio.insecure_channel(f"127.0.0.1:{port}"),
                                                 pricing, idempotent=True) as channel:
            get = channel.unary_unary("/shop.Pricing/GetPrice")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            replies = await asyncio.gather(*(get(str(i).encode()) for i in range(1, 17)))
            stalled = [i for i in range(1, 17) if i % 4 == 0]
            print(f"16 concurrent calls answered in {loop.time() - t0:.2f} s; requests {stalled} "
                  f"stalled on their first try and were retried "
                  f"({sum(r.startswith(b'price:') for r in replies)} prices)")

            task = asyncio.ensure_future(get(b"17"))
            await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                print("a call cancelled by its caller: counted as cancelled, not as a failure")

            down = True
            answers = [await get(b"99") for _ in range(5)]
            print(f"while pricing is down: {[a.decode() for a in answers]} "
                  f"(breaker {pricing.breaker_state.value})")
    finally:
        await server.stop(None)
    s = pricing.stats()
    print(f"pricing: {s.calls} calls, {s.successes} ok, {s.retries} retries, {s.cancelled} cancelled, "
          f"{s.fallbacks} answered by the fallback")
    assert all(r.startswith(b"price:") for r in replies) and s.cancelled == 1
    assert answers[-1] == b"price:cached"


if __name__ == "__main__":
    asyncio.run(main())
