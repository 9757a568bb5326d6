'use strict';

// Files through the real client against a real `wxauth dev`: the shim's
// wx.uploadFile sends a real multipart/form-data request, as WeChat does.

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDev, newClient, fetchWhenChecked } = require('../testing/harness.js');
const { WxauthError } = require('../index.js');

let server;
test.before(async () => {
  server = await startDev();
});
test.after(() => server && server.stop());

/** A small PNG's first bytes (the type is read from them) and some more. */
function png(size) {
  const head = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52]);
  const rest = Buffer.alloc(size, 7);
  return Buffer.concat([head, rest]);
}

test('uploadFile sends what wx.uploadFile sends, and the URL opens with no header', async () => {
  const { client, shim } = newClient(server, 'una');
  const bytes = png(3000);
  const path = shim.addTempFile(bytes, 'tmp_photo.png');
  const file = await client.uploadFile(path, { purpose: 'image' });
  assert.equal(file.content_type, 'image/png');
  assert.equal(file.size, bytes.length);
  assert.equal(file.purpose, 'image');
  assert.equal(file.public, false);
  assert.equal(file.filename, path.split('/').pop());
  assert.ok(file.url.startsWith(server.api + '/v1/files/'), file.url);
  const res = await fetch(file.url);
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
  assert.equal(shim.counts.upload, 1);
});

test('a revoked session: the upload refreshes once and is sent again', async () => {
  const { client, shim } = newClient(server, 'vic');
  await client.login();
  const tokens = shim.storage.get('wxauth');
  const r = await fetch(`${server.api}/v1/logout`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
  assert.equal(r.status, 204);
  const file = await client.uploadFile(shim.addTempFile(png(10), 'a.png'), { purpose: 'image' });
  assert.equal(file.status, 'pending', 'wxauth dev has WeChat (the simulator) check images');
  assert.equal(shim.counts.upload, 2, 'refused once, then sent again');
  assert.equal(shim.counts.byPath['POST /v1/token/refresh'], 1);
  assert.equal(shim.counts.login, 2, 'the refresh token went with the session: one new login');
});

test('setAvatar takes the chooseAvatar event and sets a public avatar_url', async () => {
  const { client, shim } = newClient(server, 'wes');
  const me = await client.setAvatar(shim.chooseAvatarEvent(png(500)));
  const url = me.profile.avatar_url;
  assert.ok(typeof url === 'string' && url.startsWith(server.api), url);
  assert.ok(!url.includes('sig='), 'an avatar URL does not expire');
  // Others see it once WeChat's check passed it.
  const res = await fetchWhenChecked(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('cache-control'), /^public/);
  assert.equal((await client.me()).profile.avatar_url, url);
  await assert.rejects(client.setAvatar({ detail: {} }), (e) => e instanceof WxauthError && e.error === 'invalid_request');
});

test('files() lists, reads and deletes; refusals are WxauthErrors with the server code', async () => {
  const { client, shim } = newClient(server, 'xia');
  const a = await client.uploadFile(shim.addTempFile(png(10), 'a.png'), { purpose: 'image', public: true });
  const b = await client.uploadFile(shim.addTempFile(Buffer.from('%PDF-1.4 cv'), 'cv.pdf'));
  assert.equal(b.purpose, 'attachment');
  assert.equal(b.content_type, 'application/octet-stream');
  const page = await client.files().list({ limit: 1 });
  assert.equal(page.items.length, 1);
  assert.equal(page.items[0].id, b.id, 'newest first');
  const rest = await client.files().list({ cursor: page.nextCursor });
  assert.deepEqual(rest.items.map((f) => f.id), [a.id]);
  assert.equal(rest.nextCursor, null);
  const again = await client.files().get(b.id);
  assert.ok(again.url.startsWith(server.api));
  await client.files().delete(b.id);
  assert.equal((await fetch(b.url)).status, 404);
  await assert.rejects(client.files().get(b.id), (e) => e instanceof WxauthError && e.statusCode === 404);
  const html = shim.addTempFile(Buffer.from('<html><script>alert(1)</script></html>'), 'x.jpg');
  await assert.rejects(
    client.uploadFile(html, { purpose: 'image' }),
    (e) => e instanceof WxauthError && e.statusCode === 415 && e.error === 'unsupported_media_type'
  );
  await assert.rejects(client.uploadFile('http://tmp/none.png'), (e) => e.error === 'network_error');
});
