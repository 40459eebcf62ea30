"""Points the official merchant SDK (global-open-sdk-python 1.7.1) at a local acquirer.

What is patched, and why
------------------------
Exactly one function is replaced: ``com.alipay.ams.api.net.default_http_rpc.__get_http_connection``
(a module-level function, so its name is not mangled; ``do_post`` looks it up in the module's
globals on every call). In the SDK it ignores the port of the gateway URL and always returns
``HTTPSConnection(host, 443, context=ssl.create_default_context())``. A test acquirer listens on
127.0.0.1 on a port chosen by the system, with a certificate made for the test, so the
replacement:

- connects to the port written in the gateway URL instead of 443;
- for an ``https://`` gateway URL, uses TLS with certificate and host-name verification left on,
  trusting only the test's certificate (``ssl.create_default_context(cafile=...)``);
- for an ``http://`` gateway URL, connects without TLS (the acquirer's default for local use).

Everything else is the SDK's own code, unchanged: ``DefaultAlipayClient.execute`` (request-time,
request signing with the merchant key, the ``Signature`` header, the path, sandbox prefixing),
``do_post`` (absolute-form request line ``POST https://host:port/ams/api/v1/… HTTP/1.1``, the
HTTP-200 check), the parsing of the lower-case ``signature`` / ``response-time`` / ``client-id``
response headers, and the response signature verification with the acquirer's public key.

Two optional test aids are also here, neither of which changes what the SDK does:

- :class:`VerifySpy` wraps the SDK's ``verify`` as seen by ``default_alipay_client`` and counts
  its calls and outcomes, passing everything through, so a test can prove that every response was
  really verified (and not, say, skipped as an unsigned answer).
- :func:`tampered_responses` alters answers in transit (between the socket and the SDK), so a
  test can prove that the SDK rejects a response whose body or signature was changed.
"""

import contextlib
import http.client
import ssl
import threading
import urllib.parse

from com.alipay.ams.api import default_alipay_client
from com.alipay.ams.api.net import default_http_rpc
from com.alipay.ams.api.tools.constants import DEFAULT_TIMEOUT

_FACTORY_NAME = "__get_http_connection"

_state = threading.local()


def _current_tamper():
    return getattr(_state, "tamper", None)


class _TamperedResponse:
    """The few members of ``http.client.HTTPResponse`` that ``do_post`` uses."""

    def __init__(self, inner, tamper):
        self._inner = inner
        self._headers, self._body = tamper(inner.getheaders(), inner.read())
        self.status = inner.status

    def getheaders(self):
        return self._headers

    def read(self):
        return self._body

    def close(self):
        self._inner.close()


class _TamperingConnection:
    """Wraps a real connection; only the answer is altered."""

    def __init__(self, inner, tamper):
        self._inner = inner
        self._tamper = tamper

    def connect(self):
        self._inner.connect()

    def request(self, *args, **kwargs):
        self._inner.request(*args, **kwargs)

    def getresponse(self):
        return _TamperedResponse(self._inner.getresponse(), self._tamper)

    def close(self):
        self._inner.close()


def _make_factory(ca_file):
    def local_connection(url, timeout=DEFAULT_TIMEOUT):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            conn = http.client.HTTPSConnection(
                host=parsed.hostname,
                port=parsed.port or 443,
                timeout=timeout,
                context=context,
            )
        elif parsed.scheme == "http":
            conn = http.client.HTTPConnection(
                host=parsed.hostname, port=parsed.port or 80, timeout=timeout
            )
        else:
            raise ValueError("unsupported gateway URL scheme: " + repr(parsed.scheme))
        tamper = _current_tamper()
        if tamper is not None:
            return _TamperingConnection(conn, tamper)
        return conn

    return local_connection


def install(ca_file=None):
    """Replaces the SDK's connection factory (see the module doc). Idempotent.

    ``ca_file`` is the PEM certificate to trust for ``https://`` gateway URLs; ``None`` trusts the
    system's usual roots.
    """
    original = getattr(default_http_rpc, _FACTORY_NAME, None)
    if original is None:
        raise RuntimeError(
            "the SDK has no default_http_rpc.__get_http_connection: "
            "this patch is written for global-open-sdk-python 1.7.1"
        )
    setattr(default_http_rpc, _FACTORY_NAME, _make_factory(ca_file))


@contextlib.contextmanager
def tampered_responses(tamper):
    """Within the block, answers on this thread pass through ``tamper(headers, body)``, which
    returns the new ``(headers, body)``; ``headers`` is the list of ``(name, value)`` pairs."""
    previous = _current_tamper()
    _state.tamper = tamper
    try:
        yield
    finally:
        _state.tamper = previous


class VerifySpy:
    """Counts the SDK's response-signature verifications and their outcomes, as a pass-through."""

    def __init__(self):
        self.calls = []  # (path, client_id, outcome: True / False / exception text)
        self._original = None
        self._lock = threading.Lock()

    def __enter__(self):
        self._original = default_alipay_client.verify
        original = self._original

        def spying_verify(http_method, path, client_id, rsp_time, rsp_body, signature, key):
            try:
                ok = original(http_method, path, client_id, rsp_time, rsp_body, signature, key)
            except Exception as e:
                with self._lock:
                    self.calls.append((path, client_id, "raised " + type(e).__name__))
                raise
            with self._lock:
                self.calls.append((path, client_id, ok))
            return ok

        default_alipay_client.verify = spying_verify
        return self

    def __exit__(self, *exc):
        default_alipay_client.verify = self._original
        return False

    def count(self):
        with self._lock:
            return len(self.calls)

    def last(self):
        with self._lock:
            return self.calls[-1] if self.calls else None
