'use strict';

// Subscribe messages against a real `wxauth dev`: the consent popup
// (the shim answers as the test user, through the simulator, which pushes
// WeChat's popup event back to wxauth), the answers reported by the
// client, and what wxauth then knows.

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDev, newClient } = require('../testing/harness.js');

let server;
test.before(async () => {
  server = await startDev();
});
test.after(() => server && server.stop());

test('requestSubscribe asks the user and reports the answers', async () => {
  const { client, shim } = newClient(server, 'sub-amy');
  await client.login();
  shim.setSubscribeAnswer('TPL_NEWS', 'reject');
  const result = await client.requestSubscribe(['TPL_ORDER', 'TPL_NEWS']);
  assert.equal(result.errMsg, 'requestSubscribeMessage:ok');
  assert.equal(result.TPL_ORDER, 'accept');
  assert.equal(result.TPL_NEWS, 'reject');
  assert.equal(shim.counts.subscribe, 1);
  assert.equal(shim.counts.byPath['POST /v1/me/subscriptions'], 1);

  await assert.rejects(client.requestSubscribe([]), /1 to 3 template ids/);
  await assert.rejects(client.requestSubscribe(['A', 'B', 'C', 'D']), /1 to 3 template ids/);
});

// The whole flow with the operator's side: a service key in the config
// file; the popup's push reaches wxauth; one send per accept.
test('an accepted template allows one message', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const crypto = require('node:crypto');
  const key = 'svc_js_subscribe_test_0123456789';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-js-sub-'));
  const config = path.join(dir, 'wxauth.toml');
  fs.writeFileSync(
    config,
    `[[service_keys]]\nid = "ops"\nsha256 = "${crypto.createHash('sha256').update(key).digest('hex')}"\n` +
      `scopes = ["users:read", "messages:send"]\n`
  );
  const dev = await startDev({}, ['--config', config]);
  try {
    const { client } = newClient(dev, 'sub-bo');
    const { user } = await client.login();
    const admin = async (method, p, body) => {
      const r = await fetch(dev.api + p, {
        method,
        headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: r.status, body: await r.json() };
    };
    await client.requestSubscribe('TPL_SHIPPED');
    // WeChat's push of the same answer arrives too; counted once.
    let consent;
    for (let i = 0; i < 200; i++) {
      const view = await admin('GET', `/admin/v1/users/${user.id}/subscriptions`);
      consent = view.body.subscriptions.find((c) => c.template_id === 'TPL_SHIPPED');
      if (consent && consent.source === 'wechat') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(consent.source, 'wechat', 'the pushed popup event arrived');
    assert.equal(consent.remaining, 1);
    const message = { template_id: 'TPL_SHIPPED', data: { thing1: { value: '已发货' } } };
    const first = await admin('POST', `/admin/v1/users/${user.id}/messages`, message);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.match(first.body.msgid, /^\d+$/);
    const second = await admin('POST', `/admin/v1/users/${user.id}/messages`, message);
    assert.equal(second.status, 409);
    assert.equal(second.body.error, 'not_subscribed');
  } finally {
    dev.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The playground's board has check_text: a post with a word on the
// simulator's list is refused, naming the field.
test('a refused post names its field', async () => {
  const { client } = newClient(server, 'sub-cy');
  await client.login();
  const board = client.data('board');
  await board.add({ by: 'cy', text: 'hello' });
  await assert.rejects(board.add({ by: 'cy', text: 'this is 违规测试' }), (err) => {
    assert.equal(err.error, 'content_rejected');
    assert.equal(err.statusCode, 422);
    assert.equal(err.field, 'text');
    assert.equal(typeof err.label, 'number');
    return true;
  });
});
