"""The README's first example: an echo server and a client on two stacks joined by an in-memory wire."""

import asyncio

import aionetstack


async def main() -> None:
    left, right = aionetstack.link.pipe(mtu=65535)  # an in-memory wire between two NICs
    async with aionetstack.Stack() as client, aionetstack.Stack() as server:
        client.add_interface(left, "10.0.0.1/24")
        server.add_interface(right, "10.0.0.2/24")

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        async with await server.start_server(echo, "10.0.0.2", 7):
            reader, writer = await client.open_connection("10.0.0.2", 7)
            writer.write(b"hello")
            print(await reader.readexactly(5))
            writer.close()
            await writer.wait_closed()


asyncio.run(main())
