"""Holds a TCP port (optionally with SO_REUSEPORT) until killed; prints "listening" when bound."""

from __future__ import annotations

import socket
import sys
import time

port = int(sys.argv[1])
sock = socket.socket()
if "--reuseport" in sys.argv:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", port))
sock.listen(4)
print("listening", flush=True)
while True:
    time.sleep(1)
