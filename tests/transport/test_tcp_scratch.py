import asyncio, time
import pytest
from tcp_stream_kit import two_stacks, send_all, receive_all, tcp_info, SERVER_IP

IMPAIR = dict(loss=0.05, duplicate=0.05, reorder=0.05, delay=0.020, jitter=0.010, seed=7)

@pytest.mark.looptime
@pytest.mark.parametrize("size", [2_000_000])
async def test_impaired(size):
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter(); v0 = loop.time()
    async with two_stacks(mtu=1500, checksum_offload=False, impair=IMPAIR) as net:
        res = {}
        async def handler(r, w):
            res["srv_got"] = await receive_all(r)
            res["srv_sent"] = await send_all(w, size, seed=2)
            w.close()
            res["srv_info"] = tcp_info(w)
        async with await net.server.start_server(handler, SERVER_IP, 5000):
            r, w = await net.client.open_connection(SERVER_IP, 5000)
            sent = await send_all(w, size, seed=1)
            w.write_eof()
            got = await receive_all(r)
            info = tcp_info(w)
            w.close(); await w.wait_closed()
    print("wall", time.perf_counter() - t0, "virtual", loop.time() - v0)
    print(info)
    print(res["srv_info"])
    assert res["srv_got"] == (size, sent)
    assert got == (size, res["srv_sent"])
