"""mitmproxy's CA for MalwareSnipper, and the fingerprints browsers ask for.

Which folder holds it is a setting, decided in one place: ``Settings.confdir_path`` (``--confdir``,
else ``[proxy] confdir``, else ``<data_dir>/certs``). The CA is created there on first use.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

CA_BASENAME = "mitmproxy"


@dataclass(frozen=True)
class CaInfo:
    cert_path: Path
    sha256_fingerprint: str  # AA:BB:... as browsers show it
    spki_sha256_b64: str  # what Chromium's --ignore-certificate-errors-spki-list takes


def ensure_ca(confdir: Path) -> CaInfo:
    """Create the CA in ``confdir`` if missing (mitmproxy's own code) and describe it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from mitmproxy.certs import CertStore

    confdir = Path(confdir).expanduser()
    confdir.mkdir(parents=True, exist_ok=True)
    CertStore.from_store(confdir, CA_BASENAME, 2048)
    cert_path = confdir / f"{CA_BASENAME}-ca-cert.pem"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_hash = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return CaInfo(cert_path, fingerprint, spki_hash)
