"""Test ingest: accepts audit batches (POST {"events": [...]}) and appends each event as one JSON
line to the file given as argv[2]. Port argv[1]; with argv[3] and argv[4] (certificate and key
files) it serves HTTPS. Stdlib only; answers 202."""

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        events = json.loads(body)["events"]
        with open(sys.argv[2], "a", encoding="utf-8") as out:
            for event in events:
                out.write(json.dumps(event) + "\n")
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
if len(sys.argv) > 4:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
