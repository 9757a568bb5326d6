"""Verifies a wxauth access token with PyJWT and the JWKS URL alone, as a
Python service would (pip install "pyjwt[crypto]").

    python verify_jwks.py API_URL SIM_URL

Logs a test user in through the simulator's phone side, then checks that
the token verifies, that a tampered one does not, and that an HS256 token
"signed" with the published public key is refused by PyJWT and by wxauth.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

import jwt

APPID = "wx1111111111111111"


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def status_of(url, token):
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def main(api, sim):
    code = post(f"{sim}/sim/v1/login", {"appid": APPID, "user": "pyjwt"})["code"]
    session = post(f"{api}/v1/login", {"code": code})
    token = session["access_token"]

    with urllib.request.urlopen(f"{api}/.well-known/openid-configuration", timeout=10) as resp:
        discovery = json.load(resp)
    jwks = jwt.PyJWKClient(discovery["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer=discovery["issuer"])
    assert claims["sub"] == session["user"]["id"], claims
    assert claims["app"] == APPID, claims

    header, payload, signature = token.split(".")
    forged_claims = dict(claims, sub="someone-else")
    forged = ".".join(
        [header, base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode(), signature]
    )
    try:
        jwt.decode(forged, key.key, algorithms=["EdDSA"], issuer="wxauth")
        raise AssertionError("a tampered token verified")
    except jwt.InvalidSignatureError:
        pass

    # alg confusion: HS256 with the public key's published x as the secret.
    with urllib.request.urlopen(discovery["jwks_uri"], timeout=10) as resp:
        x = json.load(resp)["keys"][0]["x"]
    kid = jwt.get_unverified_header(token)["kid"]
    confused = jwt.encode(claims, x, algorithm="HS256", headers={"kid": kid})
    try:
        jwt.decode(confused, key.key, algorithms=["EdDSA"], issuer="wxauth")
        raise AssertionError("PyJWT accepted an HS256 token for an EdDSA key")
    except jwt.InvalidAlgorithmError:
        pass
    assert status_of(f"{api}/v1/me", confused) == 401
    assert status_of(f"{api}/v1/me", token) == 200
    print("pyjwt: the token verifies with the JWKS alone; tampered and alg-confused tokens are refused")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
