"""A minimal stand-in acquirer that signs like SPEC §2.1, written independently of the SDK.

It exists so that the SDK patch in :mod:`sdk_transport` can be checked without paycode: it
verifies each request's signature with the merchant's public key (over the path component of an
absolute-form request target), answers HTTP 200 with a canned JSON body, and signs the answer
with its own key into lower-case ``signature`` / ``response-time`` / ``client-id`` headers.
"""

import base64
import datetime
import http.server
import json
import ssl
import threading
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def new_rsa_key():
    """Returns ``(private_key, bare_base64_pkcs8, bare_base64_spki)``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(pkcs8).decode(), base64.b64encode(spki).decode()


def signed_content(path, client_id, time, body):
    head = "POST %s\n%s.%s." % (path, client_id, time)
    return head.encode() + body


def sign_value(private_key, content):
    raw = private_key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    return urllib.parse.quote_plus(base64.b64encode(raw).decode())


def verify_value(public_key, content, header):
    value = header.split("signature=", 1)[1].strip()
    raw = base64.b64decode(urllib.parse.unquote_plus(value))
    try:
        public_key.verify(raw, content, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


class FakeAcquirer:
    """Runs on 127.0.0.1:0 (TLS when ``cert``/``key`` are given) until :meth:`close`."""

    def __init__(self, merchant_public_key, answer, cert=None, key=None):
        self.acquirer_key, _, self.acquirer_public_b64 = new_rsa_key()
        self.requests = []  # dicts: target, path, headers, body, signature_ok
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = urllib.parse.urlsplit(self.path).path
                client_id = self.headers.get("Client-Id", "")
                ok = verify_value(
                    merchant_public_key,
                    signed_content(path, client_id, self.headers.get("Request-Time", ""), body),
                    self.headers.get("Signature", ""),
                )
                fake.requests.append(
                    {
                        "target": self.path,
                        "path": path,
                        "headers": dict(self.headers.items()),
                        "body": body,
                        "signature_ok": ok,
                    }
                )
                out = json.dumps(answer(path, json.loads(body))).encode()
                now = datetime.datetime.now(datetime.timezone.utc).isoformat()
                sig = sign_value(fake.acquirer_key, signed_content(path, client_id, now, out))
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=UTF-8")
                self.send_header("content-length", str(len(out)))
                self.send_header("signature", "algorithm=RSA256,keyVersion=1,signature=" + sig)
                self.send_header("response-time", now)
                self.send_header("client-id", client_id)
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
