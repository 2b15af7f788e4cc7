"""A bounded load test of `agegender serve` on loopback.

    python benchmarks/serve_load.py [--model PATH] [--clients 8] [--requests 500] [--bad-every 10] [--detector hog]

Starts the service on 127.0.0.1, sends `--requests` photo uploads from `--clients` concurrent clients, and
between them every `--bad-every`-th request is a bad upload (not an image, truncated, over the size limit,
empty) that must get its 4xx while the good ones keep succeeding. Reports requests/s, latency percentiles
of the good requests and the error count (which must be 0). Everything stays on this machine.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url: str, name: str, data: bytes) -> tuple[int, float]:
    body, content_type = multipart(name, data)
    request = urllib.request.Request(url + "/v1/predict", data=body, headers={"Content-Type": content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()
            status = reply.status
    except urllib.error.HTTPError as reply:
        status = reply.code
    return status, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--bad-every", type=int, default=10)
    parser.add_argument("--detector", default="both", help="the service's face detectors (agegender serve --detector)")
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "agegender.cli", "serve", "--port", str(port), "--max-upload-mb", "2",
               "--detector", args.detector]
    server = subprocess.Popen(command + (["--model", args.model] if args.model else []),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        photo = EXAMPLE.read_bytes()
        bad = [("notes.txt", b"not a photo", 415), ("cut.jpg", photo[: len(photo) // 4], 400),
               ("huge.jpg", b"\xff" * (3 * 1024 * 1024), 413), ("empty.jpg", b"", 400)]
        jobs = [bad[(i // args.bad_every) % len(bad)] if args.bad_every and i % args.bad_every == args.bad_every - 1
                else ("photo.jpg", photo, 200) for i in range(args.requests)]
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda job: (job[2], *post(url, job[0], job[1])), jobs))
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    good = [seconds for expected, status, seconds in results if expected == 200 and status == 200]
    wrong = [(expected, status) for expected, status, _ in results if expected != status]
    print(json.dumps({
        "clients": args.clients,
        "requests": len(results),
        "bad_requests_sent": sum(expected != 200 for expected, _, _ in results),
        "requests_per_second": round(len(results) / elapsed, 1),
        "good_latency_ms": {f"p{q}": round(1000 * float(np.percentile(good, q)), 1) for q in (50, 95, 99)},
        "errors": len(wrong),
        "unexpected_statuses": wrong[:10],
    }, indent=2))


if __name__ == "__main__":
    main()
