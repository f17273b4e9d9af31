"""Call a gRPC service through seawall's channel wrapper (sync channel).

A small ``shop.Inventory`` service on 127.0.0.1 (no generated code: raw
bytes through grpc's generic handlers) fails ``GetStock`` twice before it
answers, asks for a 200 ms pause on ``Reserve`` with
``grpc-retry-pushback-ms``, and has a ``Report`` method that is down. The
channel is wrapped once (``sw_grpc.client_interceptors`` with
``grpc.intercept_channel`` applies the same policy, at gRPC's interceptor
cost); a routing table marks ``GetStock`` as safe to re-run.

Run: python examples/grpc_sync.py
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent import futures

import grpc

import seawall
from seawall.interceptors import grpc as sw_grpc

seen: Counter[str] = Counter()


def get_stock(request: bytes, context: grpc.ServicerContext) -> bytes:
    seen["GetStock"] += 1
    attempt = dict(context.invocation_metadata()).get("seawall-attempt", "1")
    if seen["GetStock"] <= 2:
        context.abort(grpc.StatusCode.UNAVAILABLE, f"warming up (attempt {attempt})")
    return b"42 in stock"


def reserve(request: bytes, context: grpc.ServicerContext) -> bytes:
    seen["Reserve"] += 1
    if seen["Reserve"] == 1:
        context.set_trailing_metadata((("grpc-retry-pushback-ms", "200"),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many reservations, retry in 200 ms")
    return b"reserved"


def report(request: bytes, context: grpc.ServicerContext) -> bytes:
    seen["Report"] += 1
    context.abort(grpc.StatusCode.UNAVAILABLE, "reporting backend is down")


def start_server() -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shop.Inventory", {
        name: grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in (("GetStock", get_stock), ("Reserve", reserve), ("Report", report))
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


inventory = seawall.IntegrationPoint(
    "inventory",
    retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(initial=0.05, maximum=0.5)),
    breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=20, open_for=30.0),
    timeout=seawall.Timeout(attempt=0.5, total=2.0),
)


def main() -> None:
    server, target = start_server()
    routes = {
        "/shop.Inventory/GetStock": sw_grpc.Route(inventory, idempotent=True),  # a read: safe to re-run
        "/shop.Inventory/*": inventory,
    }
    channel = sw_grpc.resilient_channel(grpc.insecure_channel(target), routes)
    try:
        def method(name: str) -> grpc.UnaryUnaryMultiCallable:
            return channel.unary_unary(f"/shop.Inventory/{name}")

        print(f"GetStock -> {method('GetStock')(b'A-1').decode()!r} "
              f"after {seen['GetStock']} attempts (two UNAVAILABLE retried)")

        t0 = time.monotonic()
        print(f"Reserve  -> {method('Reserve')(b'A-1').decode()!r} after a pushback; "
              f"waited {time.monotonic() - t0:.2f} s as the server asked")

        outcomes = []
        for _ in range(6):
            try:
                method("Report")(b"daily")
            except grpc.RpcError as err:  # rejections are gRPC errors too
                refused = isinstance(err, seawall.CircuitOpenError)
                outcomes.append("circuit open" if refused else err.code().name)
        print(f"Report x6 -> {', '.join(outcomes)}; the server saw {seen['Report']} calls")
    finally:
        channel.close()
        server.stop(None).wait()
    s = inventory.stats()
    print(f"inventory: {s.calls} calls, {s.successes} ok, {s.retries} retries, "
          f"{s.rejections['breaker']} refused by the breaker")
    assert seen["GetStock"] == 3 and outcomes[-1] == "circuit open"


if __name__ == "__main__":
    main()
