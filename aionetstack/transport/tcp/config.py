"""TCP tunables, per stack and per connection (defaults follow Linux where it has one)."""

from __future__ import annotations

import attrs

__all__ = ["TcpConfig"]


@attrs.define(slots=True)
class TcpConfig:
    """Every knob of our TCP. Pass one to ``Stack(tcp=TcpConfig(...))``."""

    #: RFC 6298 §2: initial RTO 1 s; Linux's 200 ms floor (RFC 6298 says 1 s, Linux and most stacks use 200 ms).
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
    receive_buffer: int = 1 << 20  #: bytes we buffer for the application, i.e. our largest window
    send_buffer: int = 1 << 20  #: bytes the connection holds before the transport counts them as its buffer
    out_of_order_limit: int = 1 << 20  #: bytes of out-of-order data kept
    initial_window: int = 10  #: RFC 6928
    window_scaling: bool = True  #: RFC 7323 §2
    timestamps: bool = True  #: RFC 7323 §3
    sack: bool = True  #: RFC 2018
    nodelay: bool = False  #: TCP_NODELAY: turn Nagle's algorithm (RFC 896) off
    keepalive: bool = False
    keepalive_idle: float = 7200.0  #: RFC 1122 §4.2.3.6: at least two hours by default
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    persist_min: float = 0.2
    persist_max: float = 60.0
    challenge_ack_limit: int = 1000  #: RFC 5961 §7: challenge ACKs per second per stack
    mss: int | None = None  #: clamp our advertised MSS (None: from the route's MTU)
    backlog: int = 128  #: default accept-queue length
    syn_backlog: int = 256  #: SYN_RECEIVED entries per listener
    syn_cookies: bool = True  #: answer with SYN cookies (RFC 4987) when the SYN queue is full
    congestion_control: str = "newreno"

    def __attrs_post_init__(self) -> None:
        if self.rto_min <= 0 or self.rto_initial < self.rto_min or self.rto_max < self.rto_initial:
            raise ValueError(
                f"need 0 < rto_min <= rto_initial <= rto_max, got {self.rto_min}, {self.rto_initial}, {self.rto_max}"
            )
        if self.receive_buffer < 1024 or self.send_buffer < 1024:
            raise ValueError("receive_buffer and send_buffer must be at least 1024 bytes")
        if self.receive_buffer > (65535 << 14):
            raise ValueError("receive_buffer cannot exceed 2**30 (RFC 7323 §2.3: window scale at most 14)")
