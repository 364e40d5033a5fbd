"""SSH host key fingerprints, as OpenSSH prints them (shared by the lab, providers, SSH)."""

from __future__ import annotations

import base64
import hashlib


def fingerprint(public_line: str) -> str:
    """SHA256 fingerprint of a public key line ("ssh-ed25519 AAAA...")."""
    blob = base64.b64decode(public_line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
