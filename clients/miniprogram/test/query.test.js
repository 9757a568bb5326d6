'use strict';

// The CloudBase-shaped query API against a real `wxauth dev`, with a shared
// collection configured.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { startDev, newClient } = require('../testing/harness.js');
const { command } = require('../index.js');

let server;
test.before(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-query-'));
  const config = path.join(dir, 'wxauth.toml');
  fs.writeFileSync(
    config,
    '[[collections]]\nname = "posts"\naccess = "public_read"\nindexes = ["status"]\n'
  );
  server = await startDev({}, ['--config', config]);
});
test.after(() => server && server.stop());

async function seed(client) {
  const todos = client.data('todos');
  const rows = [
    { title: 'write', done: false, priority: 3, meta: { tag: 'work' } },
    { title: 'read', done: true, priority: 1 },
    { title: 'cook', done: false, priority: 1, meta: { tag: 'home' } },
    { title: 'run', done: false, priority: 5 },
    { title: 'call', done: false, priority: '2' },
  ];
  for (const r of rows) await todos.add(r);
  return todos;
}

test('where / orderBy / limit / get / count, as in CloudBase', async () => {
  const { client } = newClient(server, 'q-alice');
  await client.login();
  const todos = await seed(client);
  const _ = client.command;
  assert.equal(_, command);

  const open = await todos.where({ done: false, priority: _.gte(2) }).orderBy('priority', 'desc').limit(10).get();
  assert.deepEqual(open.data.map((d) => d.data.title), ['run', 'write']);
  assert.equal(open.nextCursor, null);
  assert.deepEqual(await todos.where({ done: false }).count(), { total: 4 });
  // A number never equals a string.
  assert.deepEqual((await todos.where({ priority: '2' }).get()).data.map((d) => d.data.title), ['call']);
  // Nested objects are dotted paths; in / nin / exists / neq.
  assert.deepEqual((await todos.where({ meta: { tag: 'home' } }).get()).data.map((d) => d.data.title), ['cook']);
  assert.deepEqual((await todos.where({ 'meta.tag': _.in(['work', 'home']) }).orderBy('title').get()).data.map((d) => d.data.title), ['cook', 'write']);
  assert.equal((await todos.where({ meta: _.exists(false) }).count()).total, 3);
  assert.equal((await todos.where({ done: _.neq(false) }).count()).total, 1);
  assert.equal((await todos.where({ title: _.nin(['run', 'read']) }).count()).total, 3);
  // Field-level and / or, and top-level or.
  const between = await todos.where({ priority: _.gt(1).and(_.lt(5)) }).get();
  assert.deepEqual(between.data.map((d) => d.data.title), ['write']);
  const edges = await todos.where({ priority: _.lte(1).or(_.gte(5)) }).orderBy('title').get();
  assert.deepEqual(edges.data.map((d) => d.data.title), ['cook', 'read', 'run']);
  const either = await todos.where(_.or([{ done: true }, { priority: _.eq(5) }])).orderBy('title').get();
  assert.deepEqual(either.data.map((d) => d.data.title), ['read', 'run']);
  const both = await todos.where(_.and([{ done: false }, { priority: _.lt(2) }])).get();
  assert.deepEqual(both.data.map((d) => d.data.title), ['cook']);
  // created_at compares with a Date.
  assert.equal((await todos.where({ created_at: _.gt(new Date(0)) }).count()).total, 5);
  assert.equal((await todos.where({ created_at: _.lt(new Date(0)) }).count()).total, 0);
  // Paging with startAfter.
  const titles = [];
  let page = await todos.orderBy('title').limit(2).get();
  for (;;) {
    titles.push(...page.data.map((d) => d.data.title));
    if (!page.nextCursor) break;
    page = await todos.orderBy('title').limit(2).startAfter(page.nextCursor).get();
  }
  assert.deepEqual(titles, ['call', 'cook', 'read', 'run', 'write']);
  // The collection's own get() is the first page, newest first; doc(id).
  const first = await todos.get();
  assert.equal(first.data[0].data.title, 'call');
  const one = await todos.doc(first.data[0].id).get();
  assert.equal(one.data.id, first.data[0].id);
  const replaced = await todos.doc(one.data.id).set({ title: 'call', done: true, priority: 2 }, { version: one.data.version });
  assert.equal(replaced.version, 2);
  await todos.doc(one.data.id).remove();
  assert.equal((await todos.count()).total, 4);
});

test('bad queries reject with the server\'s 400 naming the problem', async () => {
  const { client } = newClient(server, 'q-bob');
  await client.login();
  const todos = client.data('todos');
  await assert.rejects(todos.where({ 'a b': 1 }).get(), (e) => e.statusCode === 400 && e.error === 'invalid_request' && /segment/.test(e.message));
  const many = {};
  for (let i = 0; i < 21; i++) many['f' + i] = i;
  await assert.rejects(todos.where(many).count(), (e) => e.statusCode === 400 && /20 conditions/.test(e.message));
  await assert.rejects(todos.where({ a: command.in(Array.from({ length: 101 }, (_, i) => i)) }).get(), (e) => /100 values/.test(e.message));
  assert.throws(() => todos.orderBy('a', 'up'), TypeError);
  assert.throws(() => todos.where(command.gt(1)), TypeError);
});

test('a shared collection: others read, owner "me", writes stay the owner\'s', async () => {
  const alice = newClient(server, 'share-a').client;
  const bob = newClient(server, 'share-b').client;
  const { user } = await alice.login();
  await bob.login();
  const post = await alice.data('posts').add({ status: 'open', text: 'hello' });
  assert.equal(post.owner, user.id);
  const seen = await bob.data('posts').where({ status: 'open' }).get();
  assert.deepEqual(seen.data.map((d) => d.id), [post.id]);
  assert.equal((await bob.data('posts').where({ owner: 'me' }).count()).total, 0);
  assert.equal((await alice.data('posts').where({ owner: 'me' }).count()).total, 1);
  await assert.rejects(bob.data('posts').doc(post.id).remove(), (e) => e.statusCode === 404);
  await assert.rejects(bob.data('posts').doc(post.id).set({ status: 'spam' }), (e) => e.statusCode === 404);
  assert.equal((await bob.data('posts').doc(post.id).get()).data.data.text, 'hello');
});
