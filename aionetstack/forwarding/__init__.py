"""What a tun2socks-style forwarder needs beside :mod:`aionetstack.forwarder`.

- :mod:`.udp`: UDP sessions with endpoint-independent mapping (RFC 4787), an idle timeout and a cap;
- :mod:`.icmp`: ICMP and ICMPv6 echo to any destination, answered, relayed through a kernel ping
  socket, or dropped;
- :mod:`.dns`: DNS for forwarded flows, a fake-IP pool or a relay to real servers (IPv4 or IPv6).

Every forwarder takes both address families: a stack with IPv6 addresses on its TUN terminates
IPv6 flows as it does IPv4 ones.
"""
