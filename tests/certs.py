"""A self-signed certificate for 127.0.0.1: the agent with `agent.tls`, in the tests
(`config_data(..., tls=True)` in tests/kit.py) and the stream benchmarks (bench/streamkit.py).
Made with the openssl command, which bin/test installs."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["self_signed_cert"]


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) in `directory`, valid for two days for IP 127.0.0.1."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return cert, key
