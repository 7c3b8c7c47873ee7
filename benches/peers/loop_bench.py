"""The loop benchmarks on CPython asyncio or uvloop, for `cargo bench --bench loop`.

Usage: python3 loop_bench.py asyncio|uvloop [scale]
Prints one JSON object: {row name: best nanoseconds per operation}.
Each row is the same workload as the Rust side in benches/loop.rs.
"""

import asyncio
import json
import os
import sys
import time

REPEAT = 5


def best(fn, ops):
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) / ops * 1e9


def call_soon_chained(new_loop, n):
    def run():
        loop = new_loop()
        left = [n]

        def step():
            left[0] -= 1
            if left[0]:
                loop.call_soon(step)
            else:
                loop.stop()

        loop.call_soon(step)
        loop.run_forever()
        loop.close()

    return best(run, n)


def call_soon_batched(new_loop, n):
    def run():
        loop = new_loop()
        count = [0]

        def cb():
            count[0] += 1

        for _ in range(n):
            loop.call_soon(cb)
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert count[0] == n
        loop.close()

    return best(run, n)


def call_later_firing(new_loop, n):
    def run():
        loop = new_loop()
        left = [n]

        def cb():
            left[0] -= 1
            if not left[0]:
                loop.stop()

        for i in range(n):
            loop.call_later((i % 100) * 1e-5, cb)
        loop.run_forever()
        loop.close()

    return best(run, n)


def call_later_cancel(new_loop, n):
    def run():
        loop = new_loop()
        for _ in range(n):
            loop.call_later(10.0, int).cancel()
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()

    return best(run, n)


def tasks_gather(new_loop, n):
    async def trivial():
        return 1

    async def main():
        results = await asyncio.gather(*[asyncio.create_task(trivial()) for _ in range(n)])
        assert len(results) == n

    def run():
        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()

    return best(run, n)


def sleep0_switches(new_loop, n):
    ntasks = 100
    rounds = n // ntasks

    async def worker():
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*[worker() for _ in range(ntasks)])

    def run():
        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()

    return best(run, ntasks * rounds)


def future_round_trip(new_loop, n):
    async def main():
        loop = asyncio.get_running_loop()
        for i in range(n):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, i)
            await fut

    def run():
        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()

    return best(run, n)


def lock_uncontended(new_loop, n):
    async def main():
        lock = asyncio.Lock()
        for _ in range(n):
            async with lock:
                pass

    def run():
        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()

    return best(run, n)


def lock_contended(new_loop, n):
    ntasks = 10
    rounds = n // ntasks

    async def main():
        lock = asyncio.Lock()

        async def worker():
            for _ in range(rounds):
                async with lock:
                    await asyncio.sleep(0)

        await asyncio.gather(*[worker() for _ in range(ntasks)])

    def run():
        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()

    return best(run, ntasks * rounds)


def queue_producer_consumer(maxsize):
    def bench(new_loop, n):
        async def main():
            queue = asyncio.Queue(maxsize)

            async def producer():
                for i in range(n):
                    await queue.put(i)

            task = asyncio.create_task(producer())
            total = 0
            for _ in range(n):
                total += await queue.get()
            await task
            assert total == n * (n - 1) // 2

        def run():
            loop = new_loop()
            loop.run_until_complete(main())
            loop.close()

        return best(run, n)

    return bench


ROWS = [
    ("call_soon chained", call_soon_chained, 1_000_000),
    ("call_soon batched", call_soon_batched, 1_000_000),
    ("call_later firing", call_later_firing, 200_000),
    ("call_later + cancel", call_later_cancel, 200_000),
    ("create_task + gather (200k)", tasks_gather, 200_000),
    ("sleep(0) switches, 100 tasks", sleep0_switches, 1_000_000),
    ("future round trip", future_round_trip, 500_000),
    ("Lock acquire/release, uncontended", lock_uncontended, 1_000_000),
    ("Lock contended, 10 tasks", lock_contended, 500_000),
    ("Queue put/get, unbounded", queue_producer_consumer(0), 500_000),
    ("Queue put/get, maxsize 10", queue_producer_consumer(10), 500_000),
]


def main():
    which = sys.argv[1]
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    if which == "uvloop":
        import uvloop

        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    # BENCH_ONLY=substring runs only the matching rows, as on the Rust side.
    only = os.environ.get("BENCH_ONLY")
    out = {}
    for name, fn, n in ROWS:
        if only and only not in name:
            continue
        out[name] = fn(new_loop, max(100, int(n * scale)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
