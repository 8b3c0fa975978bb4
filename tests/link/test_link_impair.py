"""The impairment wrapper: validation, seeded loss/duplication/corruption/reordering, and delay,
jitter and rate timings checked in virtual loop time (looptime)."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Sequence

import pytest

from aionetstack.link.endpoint import LinkEndpoint, LinkKind
from aionetstack.link.impair import ImpairedLink
from aionetstack.link.pcap import PcapLink
from aionetstack.link.pipe import pipe
from aionetstack.wire import Buffer


class Recorder:
    """A NetworkDispatcher recording batches, with the loop time of each when a loop runs."""

    def __init__(self) -> None:
        self.batches: list[tuple[LinkEndpoint, list[bytes]]] = []
        self.times: list[float] = []
        self.writable: list[tuple[LinkEndpoint, bool]] = []
        self._waiter: tuple[int, asyncio.Future[None]] | None = None

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.batches.append((link, [bytes(f) for f in frames]))
        try:
            self.times.append(asyncio.get_running_loop().time())
        except RuntimeError:
            self.times.append(float("nan"))
        if self._waiter is not None and len(self.frames) >= self._waiter[0]:
            future = self._waiter[1]
            self._waiter = None
            if not future.done():
                future.set_result(None)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        self.writable.append((link, writable))

    @property
    def frames(self) -> list[bytes]:
        return [f for _, batch in self.batches for f in batch]

    @property
    def arrivals(self) -> list[tuple[float, bytes]]:
        """(loop time, frame) for every frame, in arrival order."""
        return [(t, f) for t, (_, batch) in zip(self.times, self.batches, strict=True) for f in batch]

    async def wait_for(self, count: int) -> None:
        """Until ``count`` frames have arrived (virtual time fast-forwards meanwhile)."""
        if len(self.frames) >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = (count, future)
        await future


def numbered(count: int, size: int = 100) -> list[bytes]:
    """Distinct frames: an Ethernet-sized header then the index."""
    return [b"\x02" * 14 + i.to_bytes(4, "big") + b"\x00" * (size - 18) for i in range(count)]


def index(frame: bytes) -> int:
    return int.from_bytes(frame[14:18], "big")


def wired(**kwargs: object) -> tuple[ImpairedLink, Recorder, LinkEndpoint]:
    """An impaired left end of a pipe; the recorder sits on the right end."""
    a, b = pipe(checksum_offload=kwargs.pop("checksum_offload", False))  # type: ignore[arg-type]
    far = Recorder()
    b.attach(far)
    return ImpairedLink(a, **kwargs), far, b  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["loss", "duplicate", "reorder", "corrupt"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_probabilities_are_validated(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        ImpairedLink(pipe(checksum_offload=False)[0], **{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delay": -1.0}, "delay"),
        ({"jitter": -0.5}, "jitter"),
        ({"rate": 0}, "rate"),
        ({"rate": -5.0}, "rate"),
        ({"reorder_delay": -1.0}, "reorder_delay"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_other_arguments_are_validated(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ImpairedLink(pipe()[0], **kwargs)  # type: ignore[arg-type]


def test_corruption_on_an_offload_link_is_refused() -> None:
    with pytest.raises(ValueError, match="checksum_offload=False"):
        ImpairedLink(pipe()[0], corrupt=0.01)
    ImpairedLink(pipe(checksum_offload=False)[0], corrupt=0.01)  # fine: the stack verifies


def test_no_timing_impairment_passes_synchronously_in_one_batch() -> None:
    link, far, b = wired(loss=0.25, duplicate=0.25, seed=1)
    frames = numbered(40)
    link.write(frames)  # no event loop anywhere: nothing needed one
    assert len(far.batches) == 1 and far.batches[0][0] is b
    received = far.frames
    assert link.stats["sent"] == len(received) == 40 - link.stats["lost"] + link.stats["duplicated"]
    assert link.stats["lost"] > 0 and link.stats["duplicated"] > 0
    assert link.stats["delayed"] == 0
    # Order kept, duplicates adjacent.
    indices = [index(f) for f in received]
    assert indices == sorted(indices)


def test_loss_and_duplication_rates_and_replay() -> None:
    def run(seed: int) -> tuple[list[bytes], dict[str, int]]:
        link, far, _ = wired(loss=0.1, duplicate=0.05, seed=seed)
        for chunk in range(20):
            link.write(numbered(500)[chunk * 25 : chunk * 25 + 25] * 20)
        return far.frames, link.stats

    frames, stats = run(42)
    total = 20 * 25 * 20
    assert abs(stats["lost"] / total - 0.1) < 0.015
    assert abs(stats["duplicated"] / (total - stats["lost"]) - 0.05) < 0.01
    again, stats_again = run(42)
    assert again == frames and stats_again == stats
    other, _ = run(43)
    assert other != frames


def test_loss_one_drops_everything_and_zero_nothing() -> None:
    link, far, _ = wired(loss=1.0)
    link.write(numbered(10))
    assert far.frames == [] and link.stats["lost"] == 10
    link, far, _ = wired()
    link.write(numbered(10))
    assert far.frames == numbered(10)


def test_egress_stream_is_random_random_of_the_seed() -> None:
    rng = random.Random(7)
    expected = [i for i in range(50) if not rng.random() < 0.5]
    link, far, _ = wired(loss=0.5, seed=7)
    link.write(numbered(50))
    assert [index(f) for f in far.frames] == expected


def test_corruption_flips_one_bit_past_the_ethernet_header() -> None:
    link, far, _ = wired(corrupt=1.0, seed=5)
    frames = numbered(200, size=64)
    originals = [bytes(f) for f in frames]
    link.write(frames)
    assert frames == originals  # the caller's buffers are not touched
    assert link.stats["corrupted"] == 200
    positions = set()
    for sent, got in zip(originals, far.frames, strict=True):
        diff = [i for i in range(len(sent)) if sent[i] != got[i]]
        assert len(diff) == 1
        assert diff[0] >= 14
        assert bin(sent[diff[0]] ^ got[diff[0]]).count("1") == 1
        positions.add(diff[0])
    assert len(positions) > 20  # spread over the frame, not one favourite byte


def test_corruption_on_ip_link_may_hit_byte_zero() -> None:
    a, b = pipe(checksum_offload=False, kind=LinkKind.IP)
    far = Recorder()
    b.attach(far)
    link = ImpairedLink(a, corrupt=1.0, seed=2)
    assert link.header_length == 0 and link.mac == b""
    link.write([b"\x45" * 4] * 200)
    assert any(f[0] != 0x45 for f in far.frames)


def test_wrapper_delegates_to_inner_and_forwards_upwards() -> None:
    a, b = pipe(mtu=1400)
    link = ImpairedLink(a)
    above, far = Recorder(), Recorder()
    link.attach(above)
    b.attach(far)
    assert (link.mtu, link.mac, link.kind, link.capabilities) == (1400, a.mac, a.kind, a.capabilities)
    assert a.dispatcher is link
    b.write([b"\x01" * 60])
    assert above.batches == [(link, [b"\x01" * 60])]
    b.pause_reading()
    assert not link.writable and above.writable == [(link, False)]
    b.resume_reading()
    assert link.writable and above.writable == [(link, False), (link, True)]
    link.pause_reading()
    assert not b.writable
    link.resume_reading()
    assert b.writable
    link.close()
    assert a.closed
    link.write([b"\x00" * 60])
    assert link.stats["dropped"] == 1 and far.frames == []


def test_timed_impairment_without_a_loop_says_so() -> None:
    link, _, _ = wired(delay=0.01)
    with pytest.raises(RuntimeError, match="event loop"):
        link.write(numbered(1))


@pytest.mark.looptime
async def test_delay_is_exact_and_same_instant_frames_share_a_batch() -> None:
    link, far, _ = wired(delay=0.050)
    loop = asyncio.get_running_loop()
    start = loop.time()
    link.write(numbered(5))
    assert far.frames == [] and link.pending == 5
    await asyncio.sleep(0.020)
    link.write(numbered(8)[5:])
    await far.wait_for(8)
    assert len(far.batches) == 2
    assert far.times == [pytest.approx(start + 0.050), pytest.approx(start + 0.070)]
    assert [index(f) for f in far.frames] == list(range(8))
    assert link.stats["delayed"] == 8 and link.stats["sent"] == 8 and link.pending == 0


@pytest.mark.looptime
async def test_rate_serialises_frames_then_adds_delay() -> None:
    link, far, _ = wired(rate=100_000, delay=0.010)  # 100 kB/s: a 1000-byte frame takes 10 ms
    start = asyncio.get_running_loop().time()
    link.write(numbered(3, size=1000))
    await asyncio.sleep(0.005)
    link.write(numbered(4, size=1000)[3:])  # queues behind the first three
    await far.wait_for(4)
    assert [round(t - start, 6) for t, _ in far.arrivals] == [0.020, 0.030, 0.040, 0.050]
    # Once the wire has drained, a new frame starts at once.
    await asyncio.sleep(1.0)
    later = asyncio.get_running_loop().time()
    link.write(numbered(1, size=500))
    await far.wait_for(5)
    assert far.times[-1] == pytest.approx(later + 0.005 + 0.010)


@pytest.mark.looptime
async def test_jitter_stays_within_bounds_and_varies() -> None:
    link, far, _ = wired(delay=0.100, jitter=0.020, seed=11)
    start = asyncio.get_running_loop().time()
    link.write(numbered(200))
    await far.wait_for(200)
    delays = [t - start for t, _ in far.arrivals]
    assert all(0.080 - 1e-6 <= d <= 0.120 + 1e-6 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100
    assert [index(f) for f in far.frames] != list(range(200))  # jitter reorders, as in netem


@pytest.mark.looptime
async def test_reorder_holds_frames_back_so_later_ones_overtake() -> None:
    link, far, _ = wired(reorder=0.3, seed=4)  # reorder_delay defaults to 1 ms without delay
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(30):
        link.write(numbered(30)[i : i + 1])
        await asyncio.sleep(0.0004)
    await far.wait_for(30)
    order = [index(f) for f in far.frames]
    assert sorted(order) == list(range(30))
    assert order != list(range(30))
    held = link.stats["reordered"]
    assert 0 < held < 30
    # Held frames arrived exactly 1 ms after they were written.
    for t, frame in far.arrivals:
        written = start + index(frame) * 0.0004
        assert t - written == pytest.approx(0.0, abs=1e-6) or t - written == pytest.approx(0.001, abs=1e-6)


@pytest.mark.looptime
async def test_reorder_delay_defaults_to_half_the_delay() -> None:
    link, far, _ = wired(delay=0.040, reorder=1.0)
    assert link.reorder_delay == pytest.approx(0.020)
    start = asyncio.get_running_loop().time()
    link.write(numbered(1))
    await far.wait_for(1)
    assert far.times == [pytest.approx(start + 0.060)]


@pytest.mark.looptime
async def test_same_seed_same_timeline() -> None:
    async def run(seed: int) -> list[tuple[float, bytes]]:
        link, far, _ = wired(
            loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.1, delay=0.010, jitter=0.005, rate=1e6, seed=seed
        )
        start = asyncio.get_running_loop().time()
        for _ in range(10):
            link.write(numbered(20, size=200))
            await asyncio.sleep(0.001)
        await asyncio.sleep(1.0)
        return [(round(t - start, 9), f) for t, f in far.arrivals]

    first = await run(99)
    assert len(first) > 150
    assert await run(99) == first
    assert await run(100) != first


@pytest.mark.looptime
async def test_ingress_impairs_delivery_up_and_leaves_egress_alone() -> None:
    a, b = pipe()
    far, above = Recorder(), Recorder()
    b.attach(far)
    link = ImpairedLink(a, delay=0.030, direction="ingress")
    link.attach(above)
    start = asyncio.get_running_loop().time()
    link.write(numbered(2))
    assert far.frames == numbered(2)  # egress untouched, synchronous
    b.write(numbered(3))
    assert above.frames == []
    await above.wait_for(3)
    assert above.batches[0][0] is link
    assert above.times == [pytest.approx(start + 0.030)]


def test_both_directions_draw_from_separate_streams() -> None:
    a, b = pipe()
    far, above = Recorder(), Recorder()
    b.attach(far)
    link = ImpairedLink(a, loss=0.5, direction="both", seed=8)
    link.attach(above)
    link.write(numbered(64))
    b.write(numbered(64))
    down = [index(f) for f in far.frames]
    up = [index(f) for f in above.frames]
    assert 10 < len(down) < 54 and 10 < len(up) < 54
    assert down != up


@pytest.mark.looptime
async def test_paused_dispatcher_holds_delayed_ingress_frames() -> None:
    a, b = pipe()
    above = Recorder()
    b.attach(Recorder())
    link = ImpairedLink(a, delay=0.010, direction="ingress")
    link.attach(above)
    b.write(numbered(2))
    link.pause_reading()
    await asyncio.sleep(0.050)
    assert above.frames == []  # due, but held while the layer above is paused
    b.write(numbered(3)[2:])  # the pipe holds this one
    link.resume_reading()
    await above.wait_for(3)
    assert [index(f) for f in above.frames] == [0, 1, 2]


@pytest.mark.looptime
async def test_close_drops_what_is_in_flight() -> None:
    link, far, _ = wired(delay=0.010)
    link.write(numbered(4))
    link.close()
    await asyncio.sleep(0.050)
    assert far.frames == [] and link.stats["dropped"] == 4 and link.pending == 0


@pytest.mark.looptime
async def test_pcap_above_and_below_impairment_compose() -> None:
    a, b = pipe()
    far = Recorder()
    b.attach(far)
    above_capture = io.BytesIO()
    stack_side = PcapLink(ImpairedLink(PcapLink(a, io.BytesIO()), delay=0.005), above_capture)
    start = asyncio.get_running_loop().time()
    stack_side.write(numbered(3))
    await far.wait_for(3)
    assert far.times == [pytest.approx(start + 0.005)]
    assert stack_side.frames_written == 3
