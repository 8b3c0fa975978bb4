"""Four hosts on a virtual switch, one behind a lossy, slow link, everything captured to a pcap.

Run it and open the capture with Wireshark (or `tshark -r virtual_network.pcap`).
"""

import asyncio
import hashlib
import sys
import tempfile
from pathlib import Path

import aionetstack
from aionetstack.link import ImpairedLink, PcapLink, Switch


async def main(pcap_path: Path) -> None:
    switch = Switch(mtu=1500, checksum_offload=False)
    stacks = [aionetstack.Stack(f"host{i}") for i in range(1, 5)]
    for i, stack in enumerate(stacks, start=1):
        link = switch.port()
        if i == 4:  # host4 sits behind 2% loss and 10 ms +- 5 ms of delay, replayable with seed 7
            link = ImpairedLink(link, loss=0.02, delay=0.010, jitter=0.005, seed=7, direction="both")
        if i == 1:  # capture everything host1 sends and receives
            link = PcapLink(link, pcap_path)
        stack.add_interface(link, f"10.0.0.{i}/24")

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest = hashlib.sha256()
        while data := await reader.read(1 << 16):
            digest.update(data)
        writer.write(digest.hexdigest().encode())
        writer.close()

    for stack in stacks:
        stack.start()
    try:
        for i in (2, 3, 4):
            rtt = await stacks[0].ping(f"10.0.0.{i}")
            print(f"ping host{i}: {rtt * 1000:.2f} ms")
        server = await stacks[3].start_server(sink, "10.0.0.4", 9000)
        payload = bytes(range(256)) * 4096  # 1 MiB
        reader, writer = await stacks[0].open_connection("10.0.0.4", 9000)
        writer.write(payload)
        writer.write_eof()
        answer = await reader.read()
        assert answer.decode() == hashlib.sha256(payload).hexdigest(), "the bytes arrived changed"
        info = writer.get_extra_info("tcp_info")
        print(
            f"1 MiB to host4 intact; retransmissions: "
            f"rto={info['retransmits_rto']} fast={info['retransmits_fast']}"
        )
        writer.close()
        server.close()
    finally:
        for stack in stacks:
            await stack.close()
    print(f"capture: {pcap_path} ({pcap_path.stat().st_size} bytes)")


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "virtual_network.pcap"
    asyncio.run(main(path))
