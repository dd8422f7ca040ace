"""A writer process for the live-tail tests: ``python -m tests.apps.log_writer PATH NAME COUNT
MAX_BYTES PAD PAUSE_MS``. Writes COUNT JSON lines (``writer`` NAME, ``seq`` 0..COUNT-1, a
PAD-byte filler) through the real rotating handler (gzip on, retention off), sharing PATH
with other writers (as gunicorn workers do), pausing PAUSE_MS between lines, then waits for
its compressor."""

from __future__ import annotations

import sys
import time

import orjson

from flask_observe.logging.files import RetentionPolicy, RotatingFileHandler


def main(path: str, name: str, count: int, max_bytes: int, pad: int, pause_ms: float) -> None:
    # Retention off: every line written stays in some file, the test's ground truth.
    keep = RetentionPolicy(max_age_days=0, max_files=0, max_total_bytes=0)
    handler = RotatingFileHandler(path, max_bytes=max_bytes, compress=True, retention=keep)
    filler = "x" * pad
    for seq in range(count):
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        line = orjson.dumps(
            {
                "timestamp": stamp,
                "level": "info",
                "message": "tail line",
                "writer": name,
                "seq": seq,
                "pad": filler,
            }
        ).decode()
        handler.write_line(line, now)
        if pause_ms:
            time.sleep(pause_ms / 1000)
    handler.wait_idle(30)
    handler.close()


if __name__ == "__main__":
    path, name, count, max_bytes, pad, pause = sys.argv[1:7]
    main(path, name, int(count), int(max_bytes), int(pad), float(pause))
