"""Schemathesis hooks for wxauth: every test case gets a session of its own.

A fresh login per case (a wx.login code from the simulator's phone side,
then POST /v1/login) keeps one case's logout from turning every later case
into a 401. WXAUTH_SIM_URL and WXAUTH_API_URL come from scripts/python-clients.sh.
"""

import json
import os
import uuid
import urllib.request

import schemathesis

SIM = os.environ["WXAUTH_SIM_URL"]
API = os.environ["WXAUTH_API_URL"]
APPID = "wx1111111111111111"


def _post(url, body):
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@schemathesis.auth(refresh_interval=None)
class FreshSession:
    def get(self, case, ctx):
        code = _post(f"{SIM}/sim/v1/login", {"appid": APPID, "user": "schemathesis"})["code"]
        return _post(f"{API}/v1/login", {"code": code})["access_token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        if case.operation.path == "/v1/introspect" or case.operation.path.startswith("/admin/"):
            # Services introspect and operators administer with a service
            # key, not a user's token.
            case.headers["Authorization"] = f"Bearer {os.environ['WXAUTH_TEST_SERVICE_KEY']}"
        else:
            case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """In stateful scenarios, every create gets an Idempotency-Key of its own.

    A repeated key with the same body answers with the first create's
    answer even after that document was deleted (documented, as Stripe
    does); Hypothesis repeats generated values, so a scenario could replay an
    earlier create and then find its document gone (ST302), which is the
    contract working, not a fault. Replays are tested in the Rust suite.
    """
    phase = getattr(getattr(case.meta, "phase", None), "name", None)
    if str(getattr(phase, "value", phase)) != "stateful" or not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "idempotency-key":
            case.headers[name] = f"{case.headers[name][:200]}-{uuid.uuid4().hex}"
