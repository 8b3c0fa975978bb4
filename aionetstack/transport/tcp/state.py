"""TCP's states and the transitions between them (RFC 9293 §3.3.2, figure 5).

The connection moves between states in three places besides the handshake: the application's
CLOSE, the peer's FIN, and the ACK of our FIN. Each is one table here, read by the code that takes
the step, so the whole diagram is on one screen.
"""

from __future__ import annotations

import enum

__all__ = [
    "AFTER_CLOSE",
    "AFTER_FIN",
    "AFTER_FIN_ACKED",
    "CAN_RECEIVE",
    "CAN_SEND",
    "TcpState",
]


class TcpState(enum.IntEnum):
    """RFC 9293 §3.3.2."""

    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


CLOSED = TcpState.CLOSED
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT

#: States in which we may still send data.
CAN_SEND = frozenset({ESTABLISHED, CLOSE_WAIT})
#: States in which received data is accepted (RFC 9293 §3.10.7.4, "seventh, process the segment text").
CAN_RECEIVE = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: States that answer an ABORT with a reset (RFC 9293 §3.10.5).
RESET_ON_ABORT = frozenset({SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT})
#: States in which the peer's FIN already arrived: a repeated one is only acknowledged.
FIN_RECEIVED = frozenset({CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT})
#: States in which a zero window is probed (RFC 9293 §3.8.6.1): data of ours may wait behind it,
#: CLOSING too (the peer's FIN may arrive while our data still waits).
PROBES_WINDOW = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})

#: CLOSE for the sending side (RFC 9293 §3.10.4): where the FIN we queue takes us.
AFTER_CLOSE: dict[TcpState, TcpState] = {
    ESTABLISHED: FIN_WAIT_1,
    SYN_RECEIVED: FIN_WAIT_1,
    CLOSE_WAIT: LAST_ACK,
}
#: The peer's FIN arrives in order (RFC 9293 §3.10.7.4, eighth step). FIN-WAIT-1 goes to CLOSING,
#: or straight to TIME-WAIT when the same segment acknowledged our FIN.
AFTER_FIN: dict[TcpState, TcpState] = {
    SYN_RECEIVED: CLOSE_WAIT,
    ESTABLISHED: CLOSE_WAIT,
    FIN_WAIT_1: CLOSING,
    FIN_WAIT_2: TIME_WAIT,
}
#: Our FIN is acknowledged (RFC 9293 §3.10.7.4, fifth step); LAST-ACK's end is CLOSED.
AFTER_FIN_ACKED: dict[TcpState, TcpState] = {
    FIN_WAIT_1: FIN_WAIT_2,
    CLOSING: TIME_WAIT,
    LAST_ACK: CLOSED,
}
