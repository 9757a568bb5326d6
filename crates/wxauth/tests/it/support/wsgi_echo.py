"""A service behind wxauth's gateway, on Python's own WSGI server (wsgiref),
as a developer's service would run: it reads headers the CGI way, where
`X-Wxauth-User-Id` and `X_Wxauth_User_Id` are the same variable.

It answers every request with what it saw as JSON, and `GET .../_seen`
with every request line seen so far. Prints its port, then serves until
killed (tests/it/gateway.rs starts it).
"""
import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

seen = []


class Handler(WSGIRequestHandler):
    def get_environ(self):
        env = super().get_environ()
        env["RAW_URI"] = self.path  # the target exactly as it arrived
        return env

    def log_message(self, *args):
        pass


def app(env, start_response):
    raw = env["RAW_URI"]
    if raw.split("?")[0].endswith("/_seen"):
        body = {"seen": seen}
    else:
        seen.append(raw)
        body = {
            "raw_uri": raw,
            "path_info": env.get("PATH_INFO"),
            "method": env["REQUEST_METHOD"],
            "http": {k: v for k, v in env.items() if k.startswith("HTTP_")},
        }
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=Handler)
print(server.server_port, flush=True)
sys.stdout.close()
server.serve_forever()
