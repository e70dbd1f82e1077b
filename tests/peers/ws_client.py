"""A WebSocket client on the Python `websockets` library, against an echo server.

Run: python3 tests/peers/ws_client.py ws://127.0.0.1:9504/ [deflate|plain]

Prints one JSON object per check ({"check": name, "ok": bool, ...}) and exits 0 when all
passed. Used by tests/it/ws_peers.rs; needs `pip install websockets`.
"""

import json
import sys

from websockets.sync.client import connect

URI = sys.argv[1]
MODE = sys.argv[2] if len(sys.argv) > 2 else "deflate"
results = []


def check(name, ok, **extra):
    results.append(dict(check=name, ok=bool(ok), **extra))


compression = None if MODE == "plain" else "deflate"
with connect(URI, compression=compression, max_size=None, open_timeout=20, close_timeout=20) as ws:
    names = [type(e).__name__ for e in ws.protocol.extensions]
    check("extensions", ("PerMessageDeflate" in names) == (MODE == "deflate"), extensions=names)
    ws.send("hello")
    check("text", ws.recv(timeout=20) == "hello")
    ws.send(b"\x00\x01\xff")
    check("binary", ws.recv(timeout=20) == b"\x00\x01\xff")
    text = "ünïcödé " * 1000
    ws.send(text)
    check("unicode", ws.recv(timeout=20) == text)
    big = (json.dumps({"user": "alice", "items": list(range(50))}) * 2000).encode()
    ws.send(big)
    check("large", ws.recv(timeout=20) == big, size=len(big))
    # A message sent in fragments comes back whole.
    ws.send(["frag", "ment", "ed"])
    check("fragmented", ws.recv(timeout=20) == "fragmented")
    for i in range(100):
        ws.send(f"m{i}")
    check("ordered", [ws.recv(timeout=20) for _ in range(100)] == [f"m{i}" for i in range(100)])
    pong = ws.ping(b"are you there")
    check("ping", pong.wait(timeout=20))
    ws.close(code=4001, reason="bye")
    check("close", ws.close_code == 4001 and ws.close_reason == "bye",
          code=ws.close_code, reason=ws.close_reason)

for line in results:
    print(json.dumps(line))
sys.exit(0 if all(r["ok"] for r in results) else 1)
