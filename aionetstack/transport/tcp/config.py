"""TCP tunables, per stack and per connection (defaults follow Linux where it has one)."""

from __future__ import annotations

import attrs

from aionetstack import _validate

__all__ = ["DEFAULT_RECEIVE_BUFFER", "DEFAULT_RECEIVE_BUFFER_MAX", "TcpConfig"]

DEFAULT_RECEIVE_BUFFER = 128 << 10  # Linux's tcp_rmem[1]
DEFAULT_RECEIVE_BUFFER_MAX = 6 << 20  # Linux's tcp_rmem[2]


@attrs.define(slots=True, on_setattr=_validate.checked_setattr(_validate.TCP_CONFIG_BOUNDS))
class TcpConfig:
    """Every knob of our TCP. Pass one to ``Stack(tcp=TcpConfig(...))``."""

    #: RFC 6298 §2: initial RTO 1 s. The floor is Linux's 200 ms (RFC 6298 §2.4 says 1 s; Linux and
    #: most stacks use 200 ms).
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 120.0
    #: Give up after this many retransmissions of one segment (Linux tcp_retries2 = 15).
    max_retransmissions: int = 15
    syn_retries: int = 6  #: Linux tcp_syn_retries
    synack_retries: int = 5  #: Linux tcp_synack_retries
    #: 2*MSL for TIME_WAIT (RFC 9293 §3.4.2 suggests MSL = 2 min; Linux uses 60 s in all).
    time_wait: float = 60.0
    delayed_ack: float = 0.04  #: delayed-ACK timer (Linux's minimum ATO); RFC 1122 §4.2.3.2 says < 0.5 s
    quick_ack_segments: int = 16  #: ACK at once for the first segments of a connection (as Linux's quickack)
    #: Bytes we buffer for the application at first, i.e. our first window (Linux's tcp_rmem[1],
    #: 128 KiB); auto-tuning (Linux's tcp_rcv_space_adjust, "DRS") grows it to twice what the
    #: application reads per RTT, up to ``receive_buffer_max``.
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER
    #: Auto-tuning's ceiling (Linux's tcp_rmem[2], 6 MiB); the window scale is chosen from it at SYN
    #: time (RFC 7323 §2.3) so that the window can grow. 0 (the default): 6 MiB when
    #: ``receive_buffer`` is left at its default, else ``receive_buffer`` — setting the buffer fixes
    #: it, as SO_RCVBUF turns auto-tuning off on Linux. Equal to ``receive_buffer``: no auto-tuning.
    receive_buffer_max: int = 0
    #: Bytes the connection holds before the transport counts them as its (asyncio) write buffer;
    #: it grows to twice the congestion window (Linux's tcp_sndbuf_expand) up to ``send_buffer_max``.
    send_buffer: int = 1 << 20
    send_buffer_max: int = 4 << 20  #: Linux tcp_wmem[2]
    #: Bytes of out-of-order data kept, counted as what it costs in memory (Linux's truesize):
    #: payload plus a per-segment and per-hole overhead (about 48 and 280 bytes on CPython), so
    #: one-byte segments cannot hold more than this.
    out_of_order_limit: int = 1 << 20
    #: Out-of-order segments kept at most (pieces of payload; a peer's segments beyond a hole). At
    #: either cap a new out-of-order segment is dropped (counted in ``out_of_order_dropped``).
    out_of_order_segments: int = 4096
    initial_window: int = 10  #: RFC 6928
    window_scaling: bool = True  #: RFC 7323 §2
    timestamps: bool = True  #: RFC 7323 §3
    sack: bool = True  #: RFC 2018
    #: TCP_NODELAY: True turns Nagle's algorithm (RFC 896) off, False keeps it. None (the default):
    #: as the API used — off on connections made or accepted through the asyncio-shaped calls
    #: (``create_connection``/``create_server``/``open_connection``/``start_server``, the drop-in
    #: loop), as asyncio sets TCP_NODELAY on every TCP socket; on for a bare ``TcpConnection``,
    #: as on a fresh kernel socket.
    nodelay: bool | None = None
    keepalive: bool = False
    keepalive_idle: float = 7200.0  #: RFC 1122 §4.2.3.6: at least two hours by default
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    persist_min: float = 0.2
    persist_max: float = 60.0
    #: RFC 5961 §7: challenge ACKs per second per stack, on average. Each second's budget is drawn
    #: at random from [limit/2, limit*3/2) (Linux's tcp_challenge_ack_limit since CVE-2016-5696),
    #: so the count an attacker can observe reveals nothing about other connections.
    challenge_ack_limit: int = 1000
    #: Per connection, at most one challenge ACK or one answer to an out-of-window pure ACK or SYN
    #: per this many seconds (Linux's tcp_invalid_ratelimit, 500 ms): no ACK loops, no reflection.
    invalid_ratelimit: float = 0.5
    #: An orphan (a connection the application closed) whose FIN was acknowledged is deleted after
    #: this long in FIN-WAIT-2 without the peer's FIN (Linux's tcp_fin_timeout). A connection only
    #: shut down for writing (``write_eof``) and still read waits as long as its application does.
    fin_timeout: float = 60.0
    #: At most this many orphans (FIN-WAIT-1/2, CLOSING, LAST-ACK after the application closed);
    #: past it the oldest is reset (Linux's tcp_max_orphans). TIME-WAIT is bounded separately.
    #: Linux sizes it from memory (half its established-hash buckets: 131,072 on a 24 GB machine,
    #: a few thousand on a small one); a fixed figure here, so that a run replays alike on every
    #: machine. 4,096 reset 5,900 of 10,000 idle connections closed at once, which Linux would
    #: have closed in order. An orphan keeps its connection, its transport and, until the
    #: connection ends, the application's protocol: a few KB plus the data it still has to send.
    max_orphans: int = 16384
    #: Retransmissions (or zero-window probes) before an orphan is given up (Linux's
    #: tcp_orphan_retries, whose 0 means 8): nobody waits for its data any more.
    orphan_retries: int = 8
    #: At most this many connections in TIME-WAIT (Linux's tcp_max_tw_buckets); past it a
    #: connection closes at once instead of waiting 2 MSL, as Linux does ("TW bucket overflow").
    #: Each is a compact record (``timewait.py``, about 600 bytes with its table entry): 8192 of
    #: them, about 5 MB.
    max_time_wait: int = 8192
    mss: int | None = None  #: clamp our advertised MSS (None: from the route's MTU)
    backlog: int = 128  #: default accept-queue length
    syn_backlog: int = 256  #: SYN_RECEIVED entries per listener
    syn_cookies: bool = True  #: answer with SYN cookies (RFC 4987) when the SYN queue is full
    #: RFC 9438 CUBIC, Linux's default; "newreno" (RFC 5681/6582) selectable per stack or per connection
    congestion_control: str = "cubic"
    rack: bool = True  #: RFC 8985 RACK as the loss detector when SACK is on (else RFC 6675 DupThresh)
    tlp: bool = True  #: RFC 8985 §7 tail loss probes (with SACK)

    def __attrs_post_init__(self) -> None:
        _validate.tcp_config(self)  # each field's type and range, naming the field
        if self.rto_min <= 0 or self.rto_initial < self.rto_min or self.rto_max < self.rto_initial:
            raise ValueError(
                "need 0 < rto_min <= rto_initial <= rto_max, "
                f"got {self.rto_min}, {self.rto_initial}, {self.rto_max}"
            )
        for name in ("challenge_ack_limit", "max_orphans", "orphan_retries", "max_time_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("invalid_ratelimit", "fin_timeout"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        if self.receive_buffer < 1024 or self.send_buffer < 1024:
            raise ValueError("receive_buffer and send_buffer must be at least 1024 bytes")
        if self.receive_buffer > (65535 << 14):
            raise ValueError("receive_buffer cannot exceed 2**30 (RFC 7323 §2.3: window scale at most 14)")
        if self.receive_buffer_max == 0:
            # As Linux: auto-tuning unless the application chose a buffer size (SOCK_RCVBUF_LOCK).
            tuned = self.receive_buffer == DEFAULT_RECEIVE_BUFFER
            self.receive_buffer_max = DEFAULT_RECEIVE_BUFFER_MAX if tuned else self.receive_buffer
        # A ceiling below the start means "no growth": raise it to the start rather than refuse.
        if self.receive_buffer_max < self.receive_buffer:
            self.receive_buffer_max = self.receive_buffer
        if self.out_of_order_limit < 0 or self.out_of_order_segments < 0:
            raise ValueError("out_of_order_limit and out_of_order_segments must not be negative")
        if self.send_buffer_max < self.send_buffer:
            self.send_buffer_max = self.send_buffer
        if self.receive_buffer_max > (65535 << 14):
            raise ValueError(
                "receive_buffer_max cannot exceed 2**30 (RFC 7323 §2.3: window scale at most 14)"
            )
