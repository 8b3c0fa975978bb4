"""Loss recovery: one strategy per connection, chosen when the handshake settles.

Without SACK, :class:`~.newreno.NewRenoRecovery` (RFC 5681 §3.2 with RFC 6582): duplicate ACKs
counted, fast retransmit of the head, partial ACKs, go-back-N after a timeout. With SACK,
:class:`~.sack.SackRecovery` (RFC 6675): a scoreboard, RACK loss detection (RFC 8985 §6), the
window reduced by PRR (``prr.py``, RFC 6937); beside it tail loss probes (``tlp.py``, RFC 8985 §7)
and the undo of spurious reductions (``undo.py``: Eifel, RFC 3522/4015; D-SACK, RFC 3708).

A strategy holds no connection state: the connection's variables stay on the connection
(``in_recovery``, ``recover``, the SACK scoreboard and RACK state, the PRR and undo figures), every
method takes the connection, and one instance of each (``NEWRENO``, ``SACK``) serves them all.
Only this package and the congestion controllers write ``cwnd``.
"""

from aionetstack.transport.tcp.recovery.base import Recovery, cwnd_limited
from aionetstack.transport.tcp.recovery.newreno import NEWRENO, NewRenoRecovery
from aionetstack.transport.tcp.recovery.sack import SACK, SackRecovery

__all__ = ["NEWRENO", "SACK", "NewRenoRecovery", "Recovery", "SackRecovery", "cwnd_limited"]
