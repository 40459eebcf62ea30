"""The merchant's notification endpoint: records every POST and acknowledges it as SPEC §2.7
asks (HTTP 200 with a SUCCESS result), so the acquirer considers it delivered."""

import http.server
import json
import threading

ACK = json.dumps(
    {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}
).encode()


class Notification:
    def __init__(self, target, headers, body):
        self.target = target  # request target as received (path and query)
        self.headers = headers  # email.message.Message: case-insensitive get()
        self.body = body  # raw bytes, exactly as received

    def header(self, name):
        return self.headers.get(name)


class NotifyReceiver:
    """Listens on 127.0.0.1:0 until :meth:`close`. ``url(path)`` is a notify URL to hand out."""

    def __init__(self):
        self._received = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._cond:
                    receiver._received.append(Notification(self.path, self.headers, body))
                    receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(ACK)))
                self.end_headers()
                self.wfile.write(ACK)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = "http://127.0.0.1:%d" % self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path):
        return self.base_url + path

    def wait_for(self, path, timeout_s):
        """The first notification POSTed to ``path``, or ``None`` after ``timeout_s``."""

        def find():
            for n in self._received:
                if n.target == path:
                    return n
            return None

        with self._cond:
            self._cond.wait_for(lambda: find() is not None, timeout=timeout_s)
            return find()

    def all_for(self, path):
        with self._cond:
            return [n for n in self._received if n.target == path]

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
