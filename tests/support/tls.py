"""A TLS handshake in memory, for tests that check a certificate chain the way clients will."""

from __future__ import annotations

import ssl
from pathlib import Path


def handshake(tmp: Path, ca_pem: str, cert_pem: str, key_pem: str, hostname: str) -> None:
    """A client trusting only ``ca_pem`` (strict X.509 checks) against a server with that certificate
    and key, over memory BIOs; raises ``ssl.SSLCertVerificationError`` on a bad chain or name."""
    (tmp / "cert.pem").write_text(cert_pem)
    (tmp / "key.pem").write_text(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client_context = ssl.create_default_context(cadata=ca_pem)
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=hostname)
    server = server_context.wrap_bio(to_server, to_client, server_side=True)
    pending = [client, server]
    for _ in range(10):
        for side in list(pending):
            try:
                side.do_handshake()
                pending.remove(side)
            except ssl.SSLWantReadError:
                pass
        if not pending:
            return
    raise AssertionError("the handshake did not finish")
