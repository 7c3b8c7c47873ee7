"""The spawn_many example in Python: /bin/echo x, N times, CONC at a time,
read through a SubprocessProtocol. `python3 spawn_many.py N CONC [uvloop]`."""
import asyncio
import resource
import sys
import time


class Collect(asyncio.SubprocessProtocol):
    def __init__(self, done):
        self.done = done
        self.output = bytearray()

    def pipe_data_received(self, fd, data):
        self.output.extend(data)

    def connection_lost(self, exc):
        self.done.set_result(None)


async def spawn_one():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, protocol = await loop.subprocess_exec(
        lambda: Collect(done), "/bin/echo", "x",
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await done
    transport.close()
    assert transport.get_returncode() == 0 and protocol.output == b"x\n"


async def spawn_many(n, conc):
    started = time.perf_counter()
    left = [n]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            await spawn_one()

    await asyncio.gather(*(worker() for _ in range(conc)))
    return n / (time.perf_counter() - started)


def main():
    n, conc = int(sys.argv[1]), int(sys.argv[2])
    before = resource.getrusage(resource.RUSAGE_SELF)
    if len(sys.argv) > 3 and sys.argv[3] == "uvloop":
        import uvloop
        rate = uvloop.run(spawn_many(n, conc))
    else:
        rate = asyncio.run(spawn_many(n, conc))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"spawns={n} concurrency={conc}")
    print(f"cpu_us_per_spawn={cpu * 1e6 / n:.1f}")
    print(f"spawns_per_s={rate:.0f}")


main()
