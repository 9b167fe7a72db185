"""The one kubelet endpoint the node agent serves: container logs. `kubectl logs` asks the API server, which
asks the node's kubelet at ``status.daemonEndpoints.kubeletEndpoint.Port`` over HTTPS; the API server of the
test cluster has no kubelet CA configured, so it does not verify this self-signed certificate."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FOLLOW_SECONDS = 300.0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodeagent-kubelet")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class LogServer:
    """Serves ``GET /containerLogs/<namespace>/<pod>/<container>`` from the agent's pod sandboxes
    (``<pods>/<namespace>_<pod>_<uid>/<container>.log``), with ``tailLines`` and ``follow``."""

    def __init__(self, pods: Path, directory: Path) -> None:
        cert, key = _self_signed(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = _handler(pods)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="kubelet-logs", daemon=True).start()


def _handler(pods: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only containerLogs is served by the node agent")
                return
            _, namespace, pod, container = parts
            sandboxes = sorted(pods.glob(f"{namespace}_{pod}_*"), key=lambda p: p.stat().st_mtime)
            log = sandboxes[-1] / f"{container}.log" if sandboxes else None
            if log is None or not log.exists():
                self.send_error(404, f"no log for container {container} of pod {namespace}/{pod}")
                return
            query = urllib.parse.parse_qs(url.query)
            data = log.read_bytes()
            tail = query.get("tailLines")
            if tail:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(tail[0]) :]) if int(tail[0]) > 0 else b""
            follow = query.get("follow", ["false"])[0] == "true"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if not follow:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if follow:
                self._follow(log, log.stat().st_size)

        def _follow(self, log: Path, offset: int) -> None:
            deadline = time.monotonic() + FOLLOW_SECONDS
            try:
                while time.monotonic() < deadline:
                    size = log.stat().st_size
                    if size > offset:
                        with log.open("rb") as handle:
                            handle.seek(offset)
                            self.wfile.write(handle.read(size - offset))
                        self.wfile.flush()
                        offset = size
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError, FileNotFoundError):
                return

    return Handler
