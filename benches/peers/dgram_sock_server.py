"""UDP echo and sock_* ping-pong servers on CPython asyncio or uvloop, for
`cargo bench --bench datagram`.

Usage: python3 dgram_sock_server.py asyncio|uvloop udp|sock
Prints the port it serves on (127.0.0.1, port 0), then serves until killed.
"""

import asyncio
import socket
import sys


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def serve_udp():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        Echo, local_addr=("127.0.0.1", 0))
    print(transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Future()


async def handle(loop, conn):
    with conn:
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                return
            await loop.sock_sendall(conn, data)


async def serve_sock():
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.create_task(handle(loop, conn))


if __name__ == "__main__":
    main = serve_udp if sys.argv[2] == "udp" else serve_sock
    if sys.argv[1] == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
