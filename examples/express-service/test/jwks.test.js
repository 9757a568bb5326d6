// Access tokens verified by libraries nobody here wrote: jose, with only
// wxauth's JWKS URL.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const { createRemoteJWKSet, jwtVerify, SignJWT, decodeProtectedHeader } = require('jose');

const { startDev, APP1 } = require('../../../clients/miniprogram/testing/harness.js');
const { createApp } = require('../server.js');

async function post(url, body, headers) {
  const r = await fetch(url, {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers || {}),
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function login(server, user) {
  const { body } = await post(`${server.sim}/sim/v1/login`, { appid: APP1, user });
  const r = await post(`${server.api}/v1/login`, { code: body.code });
  assert.strictEqual(r.status, 200);
  return r.body;
}

test('jose verifies wxauth access tokens with the JWKS URL alone', async (t) => {
  const server = await startDev();
  t.after(() => server.stop());
  const session = await login(server, 'alice');
  const token = session.access_token;
  assert.strictEqual(decodeProtectedHeader(token).alg, 'EdDSA');

  const discovery = await (await fetch(`${server.api}/.well-known/openid-configuration`)).json();
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload } = await jwtVerify(token, jwks, { issuer: discovery.issuer, algorithms: ['EdDSA'] });
  assert.strictEqual(payload.sub, session.user.id);
  assert.strictEqual(payload.app, APP1);

  // Tampered: refused.
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  claims.sub = 'someone-else';
  const forged = [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
  await assert.rejects(jwtVerify(forged, jwks, { issuer: 'wxauth' }));
  // Signed by a key that is not wxauth's: refused by jose, and by wxauth.
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  const foreign = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: decodeProtectedHeader(token).kid })
    .sign(privateKey);
  await assert.rejects(jwtVerify(foreign, jwks, { issuer: 'wxauth' }));
  const me = await fetch(`${server.api}/v1/me`, { headers: { authorization: `Bearer ${foreign}` } });
  assert.strictEqual(me.status, 401);
});

test('the example service verifies tokens itself (no shared secret)', async (t) => {
  const server = await startDev();
  t.after(() => server.stop());
  const app = createApp({ wxauthURL: server.api });
  const listener = await new Promise((resolve) => {
    const l = app.listen(0, '127.0.0.1', () => resolve(l));
  });
  t.after(() => listener.close());
  const base = `http://127.0.0.1:${listener.address().port}`;
  const session = await login(server, 'bob');
  const ok = await fetch(`${base}/direct/whoami`, { headers: { authorization: `Bearer ${session.access_token}` } });
  assert.strictEqual(ok.status, 200);
  assert.strictEqual((await ok.json()).user_id, session.user.id);
  const bad = await fetch(`${base}/direct/whoami`, { headers: { authorization: 'Bearer nope' } });
  assert.strictEqual(bad.status, 401);
});
