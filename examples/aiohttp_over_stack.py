"""An unmodified aiohttp application and client, talking over aionetstack instead of the kernel.

`aionetstack.run()` is `asyncio.run()` with the loop's network calls going to a stack; inside
`with server_stack.as_current():` they go to the server's stack instead.
"""

import aiohttp
from aiohttp import web

import aionetstack


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "from aiohttp over aionetstack", "you": request.remote})


async def main(server_stack: aionetstack.Stack) -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    with server_stack.as_current():
        await web.TCPSite(runner, "10.0.0.2", 8080).start()
    try:
        async with aiohttp.ClientSession() as session, session.get("http://web.test:8080/") as response:
            print(response.status, await response.json())
    finally:
        await runner.cleanup()
        await server_stack.close()


if __name__ == "__main__":
    left, right = aionetstack.link.pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    client.hosts["web.test"] = "10.0.0.2"
    aionetstack.run(main(server), stack=client)
