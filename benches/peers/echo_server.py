"""Protocol echo server on CPython asyncio or uvloop, for `cargo bench --bench echo`.

Usage: python3 echo_server.py asyncio|uvloop [streams | tls CERT KEY]
(`streams`: a start_server echo server reading up to 64 KiB, then write and
drain, until EOF; `tls`: the protocol echo server over TLS (OpenSSL).)
Prints the port it listens on (127.0.0.1, port 0), then serves until killed.
"""

import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def handle_echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main():
    loop = asyncio.get_running_loop()
    if len(sys.argv) > 2 and sys.argv[2] == "streams":
        server = await asyncio.start_server(handle_echo, "127.0.0.1", 0)
    elif len(sys.argv) > 2 and sys.argv[2] == "tls":
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=ctx)
    else:
        server = await loop.create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
