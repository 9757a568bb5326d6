'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDev, newClient, APP1 } = require('../testing/harness.js');
const { WxauthError } = require('../index.js');

let server;
test.before(async () => {
  server = await startDev();
});
test.after(() => server && server.stop());

async function simUser(user) {
  const res = await fetch(`${server.sim}/sim/v1/users/${APP1}/${user}`);
  return res.json();
}

test('login keeps tokens, never the session_key, and me() is the logged-in user', async () => {
  const { client, shim } = newClient(server, 'alice');
  assert.equal(client.isLoggedIn(), false);
  const { user, new_user } = await client.login();
  assert.equal(new_user, true);
  const expected = await simUser('alice');
  assert.equal(user.openid, expected.openid);
  const me = await client.me();
  assert.equal(me.openid, expected.openid);
  assert.equal(me.unionid, expected.unionid);
  const stored = JSON.stringify([...shim.storage.values()]);
  assert.ok(stored.includes('access_token'));
  assert.ok(!stored.includes(expected.session_key), 'the session_key never reaches the phone');
  assert.equal(client.currentUser().id, me.id);
});

test('ten concurrent requests on a fresh client share one wx.login and one /v1/login', async () => {
  const { client, shim } = newClient(server, 'bob');
  const results = await Promise.all(Array.from({ length: 10 }, () => client.me()));
  assert.equal(new Set(results.map((r) => r.id)).size, 1);
  assert.equal(shim.counts.login, 1);
  assert.equal(shim.counts.byPath['POST /v1/login'], 1);
  assert.equal(shim.counts.byPath['GET /v1/me'], 10);
});

test('a revoked session: the refresh fails, one new login, the request succeeds', async () => {
  const { client, shim } = newClient(server, 'carol');
  await client.login();
  // The session is revoked behind the client's back (logout elsewhere).
  const tokens = shim.storage.get('wxauth');
  const r = await fetch(`${server.api}/v1/logout`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
  assert.equal(r.status, 204);
  const me = await client.me();
  assert.equal(me.openid, (await simUser('carol')).openid);
  assert.equal(shim.counts.byPath['POST /v1/token/refresh'], 1);
  assert.equal(shim.counts.login, 2);
  assert.equal(shim.counts.byPath['POST /v1/login'], 2);
});

test('phone binding with the button event', async () => {
  const { client, shim } = newClient(server, 'dave');
  await client.login();
  const event = await shim.phoneNumberEvent('13800138000');
  const phone = await client.bindPhone(event);
  assert.deepEqual(phone, { phone_number: '13800138000', pure_phone_number: '13800138000', country_code: '86' });
  assert.deepEqual((await client.me()).phone, phone);
  await assert.rejects(client.bindPhone({ detail: { errMsg: 'getPhoneNumber:fail user deny' } }), (err) => {
    assert.ok(err instanceof WxauthError);
    assert.equal(err.error, 'no_phone_code');
    return true;
  });
});

test('decrypt checks the signature and returns the data', async () => {
  const { client, shim } = newClient(server, 'erin');
  await client.login();
  const payload = await shim.encryptedData({ nickName: '张三', stepInfoList: [{ step: 100 }] });
  const data = await client.decrypt(payload);
  assert.equal(data.nickName, '张三');
  assert.equal(data.watermark.appid, APP1);
  await assert.rejects(client.decrypt(Object.assign({}, payload, { signature: '0'.repeat(40) })), (err) => {
    assert.equal(err.error, 'decrypt_failed');
    assert.equal(err.statusCode, 400);
    return true;
  });
});

test('data CRUD, with a create whose answer was lost and retried', async () => {
  const { client, shim } = newClient(server, 'fay');
  await client.login();
  const notes = client.data('notes');
  shim.loseNextResponse('POST', '/v1/data/notes');
  const created = await notes.create({ name: '张三', age: '20' });
  assert.deepEqual(created.data, { name: '张三', age: '20' });
  assert.equal(shim.counts.byPath['POST /v1/data/notes'], 2, 'the lost answer was retried');
  const page = await notes.list();
  assert.equal(page.items.length, 1, 'the retry stored nothing more');
  assert.equal(page.next_cursor, null);
  assert.deepEqual(await notes.get(created.id), created);
  const updated = await notes.update(created.id, { name: '李四' }, { version: 1 });
  assert.equal(updated.version, 2);
  await assert.rejects(notes.update(created.id, { name: 'x' }, { version: 1 }), (err) => {
    assert.equal(err.error, 'precondition_failed');
    assert.equal(err.statusCode, 412);
    assert.ok(err.requestId);
    return true;
  });
  await notes.remove(created.id);
  await assert.rejects(notes.get(created.id), (err) => err.statusCode === 404 && err.error === 'not_found');
  const profile = await client.updateProfile({ nickname: 'Fay' });
  assert.equal(profile.profile.nickname, 'Fay');
});

test('a 503 from WeChat is retried after Retry-After, then succeeds', async () => {
  const { client, shim } = newClient(server, 'gina');
  // Busy three times: the server's own retries run out and it answers 503.
  await shim.fault({ api: 'jscode2session', errcode: -1, count: 3 });
  const started = Date.now();
  const { user } = await client.login();
  assert.equal(user.openid, (await simUser('gina')).openid);
  assert.equal(shim.counts.byPath['POST /v1/login'], 2);
  assert.equal(shim.counts.login, 1, 'the same code was used again');
  assert.ok(Date.now() - started >= 1000, 'Retry-After was honoured');
});

test('an invalid code gets one fresh wx.login', async () => {
  const { client, shim } = newClient(server, 'hank');
  await shim.fault({ api: 'jscode2session', errcode: 40029, count: 1 });
  await client.login();
  assert.equal(shim.counts.login, 2);
});

test('logout forgets the tokens and ends the session', async () => {
  const { client, shim } = newClient(server, 'ivy');
  await client.login();
  const tokens = shim.storage.get('wxauth');
  await client.logout();
  assert.equal(client.isLoggedIn(), false);
  const r = await fetch(`${server.api}/v1/me`, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(r.status, 401);
});

test('the token is never sent to another host', async () => {
  const { client, shim } = newClient(server, 'jay');
  await client.login();
  const before = shim.counts.request;
  await assert.rejects(client.request({ url: 'https://evil.example.com/steal' }), (err) => {
    assert.equal(err.error, 'invalid_request');
    return true;
  });
  await assert.rejects(client.request({ url: `${server.api}.evil.example.com/x` }));
  assert.equal(shim.counts.request, before, 'nothing was sent');
  const ok = await client.request({ url: `${server.api}/v1/me` });
  assert.equal(ok.statusCode, 200);
});
