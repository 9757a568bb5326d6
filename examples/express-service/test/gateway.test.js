// The example service behind `wxauth dev --config` with gateway entries:
// it learns the caller from headers only wxauth can set.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { startDev, APP1 } = require('../../../clients/miniprogram/testing/harness.js');
const { createApp } = require('../server.js');

async function post(url, body, headers) {
  const r = await fetch(url, {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers || {}),
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, body: await r.json().catch(() => null) };
}

async function login(server, user) {
  const { body } = await post(`${server.sim}/sim/v1/login`, { appid: APP1, user });
  const r = await post(`${server.api}/v1/login`, { code: body.code });
  assert.strictEqual(r.status, 200);
  return r.body;
}

function listen(app) {
  return new Promise((resolve) => {
    const l = app.listen(0, '127.0.0.1', () => resolve(l));
  });
}

/** A port nothing listens on. */
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

async function setup(t) {
  const express = require('express');
  const app = express();
  const seen = [];
  app.use((req, res, next) => {
    seen.push({ path: req.path, headers: req.headers });
    next();
  });
  app.use(createApp());
  // 5 MB, written in 64 KiB chunks.
  app.get('/api/big', (req, res) => {
    const chunk = Buffer.alloc(64 * 1024, 'x');
    res.setHeader('content-type', 'application/octet-stream');
    for (let i = 0; i < 80; i++) res.write(chunk);
    res.end();
  });
  app.get('/api/slow', (req, res) => {
    setTimeout(() => res.json({ late: true }), 3000);
  });
  app.get('/api/teapot', (req, res) => res.status(418).type('text/plain').send('short and stout'));
  app.get('/public/whoami', (req, res) => {
    res.json({ openid: req.get('x-wxauth-openid') || null, authorization: req.get('authorization') || null });
  });
  const service = await listen(app);
  t.after(() => service.close());
  const upstream = `http://127.0.0.1:${service.address().port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-gw-'));
  const config = path.join(dir, 'dev.toml');
  fs.writeFileSync(
    config,
    `[[gateway]]
prefix = "/api/"
upstream = "${upstream}"
auth = "required"
timeout_ms = 1000

[[gateway]]
prefix = "/public/"
upstream = "${upstream}"
auth = "optional"

[[gateway]]
prefix = "/dead/"
upstream = "http://127.0.0.1:${await deadPort()}"
`,
  );
  const server = await startDev({}, ['--config', config]);
  t.after(() => {
    server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { server, seen };
}

test('the service sees who is calling, and nothing a client could forge', async (t) => {
  const { server, seen } = await setup(t);
  const session = await login(server, 'alice');
  const auth = { authorization: `Bearer ${session.access_token}` };

  // The seed's handler, now reading x-wxauth-openid: the body's openid is just data.
  const r = await post(`${server.api}/api/data`, { openid: 'oForged', score: 10 }, Object.assign({
    'x-wxauth-openid': 'oForged',
    'x-wxauth-user-id': 'someone',
    'x-request-id': 'trace-123',
  }, auth));
  assert.strictEqual(r.status, 201);
  const me = await (await fetch(`${server.api}/v1/me`, { headers: auth })).json();
  assert.strictEqual(r.body.openid, me.openid);
  assert.notStrictEqual(r.body.openid, 'oForged');
  const h = seen.at(-1).headers;
  assert.strictEqual(h['x-wxauth-openid'], me.openid);
  assert.strictEqual(h['x-wxauth-user-id'], session.user.id);
  assert.strictEqual(h['x-wxauth-appid'], APP1);
  assert.strictEqual(h['x-wxauth-unionid'], me.unionid);
  assert.ok(h['x-wxauth-session-id']);
  assert.strictEqual(h.authorization, undefined, 'the token never reaches the service');
  assert.strictEqual(h['x-request-id'], 'trace-123', 'one request id in both logs');
  assert.strictEqual(r.headers.get('x-request-id'), 'trace-123');

  // The service's own answers come back as they are (not in wxauth's envelope).
  const teapot = await fetch(`${server.api}/api/teapot`, { headers: auth });
  assert.strictEqual(teapot.status, 418);
  assert.strictEqual(await teapot.text(), 'short and stout');

  // Required: no token, a bad one, or a logged-out one never get through.
  const before = seen.length;
  assert.strictEqual((await fetch(`${server.api}/api/whoami`)).status, 401);
  const bad = await fetch(`${server.api}/api/whoami`, { headers: { authorization: 'Bearer nope' } });
  assert.strictEqual(bad.status, 401);
  assert.strictEqual((await bad.json()).error, 'unauthorized');
  const other = await login(server, 'bob');
  const otherAuth = { authorization: `Bearer ${other.access_token}` };
  assert.strictEqual((await fetch(`${server.api}/api/whoami`, { headers: otherAuth })).status, 200);
  assert.strictEqual((await post(`${server.api}/v1/logout`, {}, otherAuth)).status, 204);
  assert.strictEqual((await fetch(`${server.api}/api/whoami`, { headers: otherAuth })).status, 401);
  assert.strictEqual(seen.length, before + 1, 'refused requests never reach the service');

  // Optional: anonymous requests pass without identity headers.
  const anon = await (await fetch(`${server.api}/public/whoami`, { headers: { 'x-wxauth-openid': 'oForged' } })).json();
  assert.deepStrictEqual(anon, { openid: null, authorization: null });
  const known = await (await fetch(`${server.api}/public/whoami`, { headers: auth })).json();
  assert.strictEqual(known.openid, me.openid);
});

test('5 MB streams through; a dead service is 502, a slow one 504 in time', async (t) => {
  const { server } = await setup(t);
  const session = await login(server, 'carol');
  const auth = { authorization: `Bearer ${session.access_token}` };

  const big = await fetch(`${server.api}/api/big`, { headers: auth });
  assert.strictEqual(big.status, 200);
  assert.strictEqual((await big.arrayBuffer()).byteLength, 80 * 64 * 1024);

  const dead = await fetch(`${server.api}/dead/x`, { headers: auth });
  assert.strictEqual(dead.status, 502);
  assert.strictEqual((await dead.json()).error, 'bad_gateway');

  const started = Date.now();
  const slow = await fetch(`${server.api}/api/slow`, { headers: auth });
  const took = Date.now() - started;
  assert.strictEqual(slow.status, 504);
  assert.strictEqual((await slow.json()).error, 'gateway_timeout');
  assert.ok(took < 2900, `answered after the service's 3 s, not at the 1 s timeout: ${took} ms`);
});

test('the walkthrough shows a gateway call', async (t) => {
  const { server } = await setup(t);
  assert.match(server.output(), /# 5\. Your service behind the gateway \(\/api\/\)/);
});
