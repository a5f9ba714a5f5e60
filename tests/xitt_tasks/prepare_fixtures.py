"""A release mirror on 127.0.0.1 for the prepare tests (no network).

`Mirror` serves bytes at `/<host>/<path>` of each official URL (what `--mirror` fetches) and
can misbehave per path: `http404`, `http503`, `reset` (close the connection with a TCP reset
before answering), `truncate` (announce the full length, send half, close), `stall` (send
half, then hang). Each mode can be limited to the first N requests. A well-behaved answer
honours `Range: bytes=N-` (206), as the release hosts do; every Range header is recorded.
`release_files` builds the releases of xquad, xcopa and tydiqa from the shipped sample, laid
out like the real ones: COPA.zip (`COPA/...`), socialiqa-train-dev.zip,
tydiqa-goldp-v1.1-dev.tgz with the per-language names, and a TyDiQA train file holding English
and Arabic questions.
"""
from __future__ import annotations

import collections
import io
import json
import socket
import struct
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from xitt_tasks.prepare import releases
from xitt_tasks.sources import SAMPLE_ROOT


class Mirror:
    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)                  # official URL -> bytes
        self.modes: dict[str, tuple[str, int]] = {}  # URL -> (mode, remaining count or -1)
        self.requests: collections.Counter = collections.Counter()
        self.ranges: collections.defaultdict = collections.defaultdict(list)  # Range headers
        self.stop_stalls = threading.Event()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_stalls.set()
        self.server.shutdown()
        self.server.server_close()

    def misbehave(self, url: str, mode: str, times: int = -1) -> None:
        self.modes[url] = (mode, times)

    def _mode(self, url: str) -> str | None:
        mode, left = self.modes.get(url, (None, 0))
        if mode is None or left == 0:
            return None
        if left > 0:
            self.modes[url] = (mode, left - 1)
        return mode

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        url = "https://" + h.path.lstrip("/")
        self.requests[url] += 1
        mode = self._mode(url)
        data = self.files.get(url)
        if data is None or mode == "http404":
            h.send_error(404)
            return
        if mode == "http503":
            h.send_error(503)
            return
        if mode == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            return
        start = _range_start(h.headers.get("Range"), len(data)) if mode is None else 0
        self.ranges[url].append(h.headers.get("Range"))
        if start:
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if mode in ("truncate", "stall"):
            h.wfile.write(data[:len(data) // 2])
            h.wfile.flush()
            if mode == "stall":
                self.stop_stalls.wait(60)
            h.close_connection = True
            return
        h.wfile.write(data)


def _range_start(header: str | None, size: int) -> int:
    """N of a `bytes=N-` Range header inside the file (0: serve it whole)."""
    if header and header.startswith("bytes=") and header.endswith("-"):
        start = int(header[len("bytes="):-1])
        return start if 0 < start < size else 0
    return 0


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _tgz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sample(rel: str) -> bytes:
    return (Path(SAMPLE_ROOT) / rel).read_bytes()


def tydiqa_train() -> bytes:
    """The sample's English train file with TyDiQA ids, plus an Arabic article to drop."""
    doc = json.loads(sample("tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json"))
    for article in doc["data"]:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qa["id"] = "english-" + qa["id"]
    arabic = json.loads(json.dumps(doc["data"][0]))
    for p in arabic["paragraphs"]:
        for qa in p["qas"]:
            qa["id"] = qa["id"].replace("english-", "arabic-")
    doc["data"].append(arabic)
    return json.dumps(doc).encode()


def release_files() -> dict[str, bytes]:
    """Official URL -> bytes for every release of xquad, xcopa and tydiqa."""
    files: dict[str, bytes] = {}
    for r in releases.releases():
        if r.name in ("xquad", "xcopa", "squad", "lareqa") and r.archive is None:
            [out] = r.outputs
            if (Path(SAMPLE_ROOT) / out.dest).exists():
                files[r.url] = sample(out.dest)
    by_name = {r.name + (r.archive or ""): r for r in releases.releases()}
    copa = by_name["copa.zip"]
    files[copa.url] = _zip({o.member: sample(o.dest) for o in copa.outputs
                            if (Path(SAMPLE_ROOT) / o.dest).exists()})
    siqa = by_name["siqa.zip"]
    files[siqa.url] = _zip({o.member: sample(o.dest) for o in siqa.outputs})
    dev = by_name["tydiqa.tgz"]
    files[dev.url] = _tgz({o.member: sample(o.dest) for o in dev.outputs})
    files[by_name["tydiqa"].url] = tydiqa_train()
    return files
