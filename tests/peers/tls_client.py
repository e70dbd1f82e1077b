"""A TLS client on Python's `ssl` module, for tests/it/tls_peers.rs.

Connects to 127.0.0.1:PORT, verifying the server against --ca for --servername, offering
--alpn and presenting --cert/--key when given; sends --send plus a newline and reads the
echoed line. Prints one JSON object: {"alpn", "subject_cn", "echo"} or {"error"}.
"""

import argparse
import json
import socket
import ssl
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--servername", default="localhost")
    parser.add_argument("--alpn", default="")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--send", default="hello")
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    if args.alpn:
        context.set_alpn_protocols(args.alpn.split(","))
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=20) as raw:
            with context.wrap_socket(raw, server_hostname=args.servername) as tls:
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                tls.sendall(args.send.encode() + b"\n")
                echo = b""
                while not echo.endswith(b"\n"):
                    chunk = tls.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed before the echo")
                    echo += chunk
                result = {
                    "alpn": tls.selected_alpn_protocol(),
                    "subject_cn": subject.get("commonName"),
                    "echo": echo.decode().rstrip("\n"),
                }
    except (OSError, ssl.SSLError, ConnectionError) as err:
        result = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
