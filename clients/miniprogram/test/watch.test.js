'use strict';

// The client's watch() against a real `wxauth dev`, through `ws` (Node's
// usual WebSocket) behind the shim's wx.connectSocket: snapshots in
// CloudBase's shape, a shared list live between two users, the app going
// to the background and back, and a token expiring mid-watch.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { startDev, newClient } = require('../testing/harness.js');

let server;
let shortLived;
test.before(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-watch-'));
  const config = path.join(dir, 'wxauth.toml');
  fs.writeFileSync(config, '[[collections]]\nname = "board"\naccess = "public_read"\n');
  server = await startDev({}, ['--config', config]);
  // Access tokens of 3 s: a watch outlives several.
  shortLived = await startDev({ WXAUTH_TOKENS__ACCESS_TTL_SECS: '3' });
});
test.after(() => {
  if (server) server.stop();
  if (shortLived) shortLived.stop();
});

/** Collects a watch's snapshots; next() waits for the next one. */
function recorder() {
  const seen = [];
  const waiting = [];
  const errors = [];
  return {
    onChange(snapshot) {
      const w = waiting.shift();
      if (w) w(snapshot);
      else seen.push(snapshot);
    },
    onError(err) {
      errors.push(err);
    },
    errors,
    next(ms) {
      if (seen.length) return Promise.resolve(seen.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no snapshot within ' + (ms || 5000) + ' ms')), ms || 5000);
        waiting.push((s) => {
          clearTimeout(timer);
          resolve(s);
        });
      });
    },
    pending() {
      return seen.length;
    },
  };
}

const titles = (snapshot) => snapshot.docs.map((d) => d.data.title);

test('watch(): init, then add, update and remove as CloudBase snapshots', async () => {
  const { client } = newClient(server, 'w-alice');
  await client.login();
  const todos = client.data('todos');
  await todos.add({ title: 'b', done: false, n: 2 });
  await todos.add({ title: 'done', done: true, n: 9 });
  const r = recorder();
  const watch = todos.where({ done: false }).orderBy('n', 'asc').watch(r);
  const init = await r.next();
  assert.equal(init.type, 'init');
  assert.deepEqual(titles(init), ['b']);
  assert.deepEqual(init.docChanges.map((c) => [c.dataType, c.queueType]), [['init', 'init']]);

  const a = await todos.add({ title: 'a', done: false, n: 1 });
  let s = await r.next();
  assert.deepEqual(titles(s), ['a', 'b'], 'kept in the query order');
  assert.deepEqual(s.docChanges.map((c) => [c.dataType, c.queueType, c.docId]), [['add', 'enqueue', a.id]]);

  await todos.update(a.id, { title: 'a', done: false, n: 3 });
  s = await r.next();
  assert.deepEqual(titles(s), ['b', 'a']);
  assert.equal(s.docChanges[0].dataType, 'update');
  assert.deepEqual(s.docChanges[0].updatedFields, { n: 3 });
  assert.deepEqual(s.docChanges[0].removedFields, []);

  await todos.update(a.id, { title: 'a', done: true, n: 3 });
  s = await r.next();
  assert.deepEqual(titles(s), ['b']);
  assert.deepEqual(s.docChanges.map((c) => [c.dataType, c.queueType]), [['remove', 'dequeue']]);
  watch.close();
  await todos.add({ title: 'after close', done: false, n: 0 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(r.pending(), 0, 'nothing after close()');
  assert.deepEqual(r.errors, []);
  await client.logout();
  assert.equal(watch.close(), undefined, 'close() after logout does nothing');
});

test('a shared list updates live for two users', async () => {
  const alice = newClient(server, 'w-ann');
  const bob = newClient(server, 'w-ben');
  await alice.client.login();
  await bob.client.login();
  const ra = recorder();
  const rb = recorder();
  const wa = alice.client.data('board').orderBy('created_at', 'asc').watch(ra);
  const wb = bob.client.data('board').orderBy('created_at', 'asc').watch(rb);
  assert.equal((await ra.next()).type, 'init');
  assert.equal((await rb.next()).type, 'init');
  await alice.client.data('board').add({ title: 'from ann' });
  await bob.client.data('board').add({ title: 'from ben' });
  for (const r of [ra, rb]) {
    let s = await r.next();
    if (s.docs.length < 2) s = await r.next();
    assert.deepEqual(titles(s), ['from ann', 'from ben']);
  }
  wa.close();
  wb.close();
});

test('the app in the background and back: what was missed arrives', async () => {
  const { client, shim } = newClient(server, 'w-cat');
  await client.login();
  const notes = client.data('notes');
  const r = recorder();
  const watch = notes.orderBy('created_at', 'asc').watch(r);
  await r.next();
  await notes.add({ title: 'one' });
  assert.deepEqual(titles(await r.next()), ['one']);
  shim.hideApp();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(shim.openSocketCount(), 0, 'no socket in the background');
  // Written from elsewhere while the app is away.
  const other = newClient(server, 'w-cat');
  await other.client.login();
  await other.client.data('notes').add({ title: 'two' });
  await other.client.data('notes').add({ title: 'three' });
  const sockets = shim.counts.socket;
  shim.showApp();
  const s = await r.next();
  assert.equal(shim.counts.socket, sockets + 1, 'one new socket');
  assert.notEqual(s.type, 'init', 'resumed, not started again');
  assert.deepEqual(titles(s), ['one', 'two', 'three']);
  assert.deepEqual(s.docChanges.map((c) => c.dataType), ['add', 'add']);
  watch.close();
  for (let i = 0; i < 50 && shim.openSocketCount() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(shim.openSocketCount(), 0, 'the last watch closed its socket');
});

test('a token that expires mid-watch is refreshed and the watch goes on', async () => {
  const { client, shim } = newClient(shortLived, 'w-dan');
  await client.login();
  const r = recorder();
  const watch = client.data('todos').watch(r);
  await r.next();
  // Past the token's expiry: the server closes the socket (4401); the
  // client refreshes and resumes.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  const writer = newClient(shortLived, 'w-dan');
  await writer.client.login();
  await writer.client.data('todos').add({ title: 'after expiry' });
  const s = await r.next(8000);
  assert.deepEqual(titles(s), ['after expiry']);
  assert.ok(shim.counts.socket >= 2, 'reconnected');
  assert.ok((shim.counts.byPath['POST /v1/token/refresh'] || 0) >= 1, 'refreshed: ' + JSON.stringify(shim.counts.byPath));
  assert.deepEqual(r.errors, []);
  await client.logout();
  assert.equal(watch.close(), undefined, 'close() after logout does nothing');
});
