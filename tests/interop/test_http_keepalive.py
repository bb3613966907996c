"""Connection reuse after an error answer, as the SDKs' pooled HTTP clients do it.

http.client (under requests, under both Python SDKs) writes the request headers and the body in
separate send() calls. If the server answers an error before the body arrives, it must either
keep the connection usable (drain the body) or say `Connection: close`; closing silently makes
the client's next request on that pooled connection fail with "Remote end closed connection"
(seen as a flaky RequestError in the policy tests)."""

from __future__ import annotations

import socket
import time

BODY_DELAY_SECS = 0.05
ATTEMPTS = 5
SOCKET_TIMEOUT_SECS = 2.0


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_error_before_body_keeps_connection_usable_or_closes_it_explicitly(server):
    host, port = server.host, server.port
    broken = []
    for attempt in range(ATTEMPTS):
        with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_SECS) as sock:
            # Unsigned (anonymous) append: refused with 403 before the handler needs the body.
            sock.sendall(
                b"POST /interop-bucket/keepalive?append&position=0 HTTP/1.1\r\n"
                b"Host: " + server.address.encode() + b"\r\nContent-Length: 1\r\n\r\n"
            )
            time.sleep(BODY_DELAY_SECS)
            try:
                sock.sendall(b"a")
            except OSError:
                pass
            first = _read_response(sock)
            assert first.startswith(b"HTTP/1.1 403"), first[:200]
            headers = first.partition(b"\r\n\r\n")[0].lower()
            if b"connection: close" in headers:
                continue  # explicit close: the client will not reuse the connection
            try:
                sock.sendall(
                    b"GET /interop-bucket/keepalive HTTP/1.1\r\nHost: " + server.address.encode() + b"\r\n\r\n"
                )
                second = _read_response(sock)
            except OSError as err:
                second = repr(err).encode()
            if not second.startswith(b"HTTP/1.1 "):
                broken.append((attempt, second[:100]))
    assert not broken, (
        "connection closed without `Connection: close` after an early error answer; "
        f"the next pooled request fails: {broken}"
    )
