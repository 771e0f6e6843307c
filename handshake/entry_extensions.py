"""Extensions inside CertificateEntry (RFC 8446 §4.4.2).

"The extensions in the Certificate message from the server MUST correspond to ones from the
ClientHello message. The extensions in the Certificate message from the client MUST
correspond to extensions in the CertificateRequest message from the server." We request none
of the entry extensions (status_request, signed_certificate_timestamp), so every one a peer
sends is unsolicited: unsupported_extension (§4.2).
"""

from __future__ import annotations

from .alerts import AlertDescription, HandshakeError
from .messages import Certificate


def refuse_unsolicited_entry_extensions(cert: Certificate) -> None:
    for entry in cert.entries:
        if entry.extensions.order:
            raise HandshakeError(
                AlertDescription.unsupported_extension,
                "unsolicited extension "
                f"{', '.join(str(t) for t in entry.extensions.order)} in a CertificateEntry",
            )
