"""A small OpenID provider for the gateway's oauth-mode tests: discovery, JWKS and token minting
over HTTPS, with real RSA/EC keys (PyJWT + cryptography from the peers venv).

usage: oidc_provider.py PORT CERT KEY

  GET  /.well-known/openid-configuration   discovery (issuer = https://127.0.0.1:PORT)
  GET  /jwks                                published keys (counts fetches in /stats)
  POST /mint    {"claims": {...}, "key": "rsa1"|"rsa2"|"ec1"|"unpublished", "ttl": seconds}
  POST /rotate  publish rsa2 as well (a key rotation)
  GET  /stats   {"jwks_fetches": n}
"""

import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PORT, CERT, KEY = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ISSUER = f"https://127.0.0.1:{PORT}"

KEYS = {
    "rsa1": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    "rsa2": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    "ec1": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
    "unpublished": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
}
published = ["rsa1", "ec1"]
stats = {"jwks_fetches": 0}


def jwk(kid):
    private, alg = KEYS[kid]
    algo = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    key = algo.to_jwk(private.public_key(), as_dict=True)
    key.update({"kid": kid, "alg": alg, "use": "sig"})
    return key


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/.well-known/openid-configuration":
            self.reply(200, {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks",
                             "authorization_endpoint": f"{ISSUER}/authorize",
                             "token_endpoint": f"{ISSUER}/token"})
        elif self.path == "/jwks":
            stats["jwks_fetches"] += 1
            self.reply(200, {"keys": [jwk(k) for k in published]})
        elif self.path == "/stats":
            self.reply(200, stats)
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path == "/mint":
            kid = body.get("key", "rsa1")
            private, alg = KEYS[kid]
            now = int(time.time())
            claims = {"iss": ISSUER, "iat": now, "exp": now + int(body.get("ttl", 300))}
            claims.update(body.get("claims", {}))
            token = jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})
            self.reply(200, {"token": token})
        elif self.path == "/rotate":
            if "rsa2" not in published:
                published.append("rsa2")
            self.reply(200, {"published": published})
        else:
            self.reply(404, {"error": "not found"})


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"oidc provider on {ISSUER}", flush=True)
server.serve_forever()
