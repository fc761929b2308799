"""The node agent's sniffer: it watches DNS responses and TCP connection attempts on the
wire (libpcap) and open sockets in ``/proc``, and reports what it saw to the mapper.

``dns`` is the pure DNS parser (bytes in, observations out); capture, socket scanning and
reporting live in their own modules, so the parser is tested with plain recorded bytes.
"""
