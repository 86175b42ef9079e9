"""A process that loads config documents for the config fuzz target, one after another.

stdin: documents, each a 4-byte big-endian length and the file's bytes. stdout: one JSON line
per document: `outcome` (`config`, `config_error` or `other`), the exception's `type` and
`message`, the `seconds` it took and the process's `peak_mb` resident so far. The fuzz test
(tests/fuzz/test_config_fuzz.py) kills it when an answer does not come in time: a document
that hangs or eats memory costs this process, never the test run.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
from pathlib import Path

from agent.config import load_config
from agent.errors import ConfigError

ENV = {
    "BREVO_API_KEY": "xkeysib-" + "0" * 64 + "-fuzz",
    "WC_CONSUMER_KEY": "ck_fuzz",
    "WC_CONSUMER_SECRET": "cs_fuzz",
    "FUZZ_VAR": "127.0.0.1:8765",
}


def _one(path: Path, raw: bytes) -> dict[str, object]:
    start = time.monotonic()
    try:
        load_config(path, env=ENV, raw=raw)
        outcome, kind, message = "config", "", ""
    except ConfigError as exc:
        outcome, kind, message = "config_error", "ConfigError", str(exc)
    except BaseException as exc:  # what the fuzz is looking for: reported, not raised
        outcome, kind, message = "other", type(exc).__name__, str(exc)[:2000]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "outcome": outcome,
        "type": kind,
        "message": message,
        "seconds": time.monotonic() - start,
        "peak_mb": peak_kb / 1024,
    }


def main() -> None:
    path = Path(sys.argv[1])
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while head := stdin.read(4):
        (size,) = struct.unpack("!I", head)
        raw = stdin.read(size)
        stdout.write(json.dumps(_one(path, raw)) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
