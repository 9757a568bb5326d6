// The playground: a mini program page driven by the real wxauth client
// (window.wxauth) through the wx shim (window.wxShim), with a timeline of
// everything the client does.
(async function () {
  'use strict';
  const config = await (await fetch('/playground/config.json')).json();
  const $ = (id) => document.getElementById(id);
  $('sim-url').textContent = config.simURL;

  function short(value) {
    // Tokens are long; show enough to tell them apart.
    return JSON.stringify(
      value,
      (key, v) => (typeof v === 'string' && /token$/.test(key) && v.length > 24 ? v.slice(0, 16) + '…' : v),
      2
    );
  }

  function addEvent(ev) {
    const li = document.createElement('li');
    const head = document.createElement('div');
    head.className = 'head';
    if (ev.kind === 'wx.login') {
      li.className = 'wx';
      head.textContent = `wx.login() as ${ev.user} → code ${ev.code}`;
    } else if (ev.kind === 'chooseAvatar') {
      li.className = 'wx';
      head.textContent = `avatar button → temporary file ${ev.avatarUrl}`;
    } else if (ev.kind === 'phone button') {
      li.className = 'wx';
      head.textContent = `phone-number button → code ${ev.code.slice(0, 16)}…`;
    } else if (ev.kind === 'socket') {
      li.className = 'wx';
      if (ev.received !== undefined) {
        const m = JSON.parse(ev.received);
        head.textContent = `WS ${ev.path} ← ${m.type}${m.changes ? ' ' + m.changes.map((c) => c.op).join(', ') : ''}`;
      } else {
        head.textContent = `WS ${ev.path} ${ev.state}${ev.code ? ' ' + ev.code : ''}`;
      }
    } else if (ev.kind === 'app') {
      li.className = 'wx';
      head.textContent = `app ${ev.state}`;
    } else {
      if (ev.status >= 400 || ev.error) li.className = 'bad';
      head.textContent = `${ev.method} ${ev.path}`;
      const status = document.createElement('span');
      status.className = 'status';
      status.textContent = ev.error ? 'network error' : `${ev.status} · ${ev.ms} ms`;
      head.appendChild(status);
    }
    li.appendChild(head);
    for (const [label, body] of [['request', ev.requestBody], ['response', ev.responseBody]]) {
      if (body === undefined || body === '') continue;
      const pre = document.createElement('pre');
      pre.textContent = `${label}: ${short(body)}`;
      li.appendChild(pre);
    }
    $('events').prepend(li);
  }

  const phones = {}; // one phone (storage) per test user
  function phoneFor(user) {
    if (!phones[user]) {
      const shim = wxShim.createWxShim({ simURL: config.simURL, appid: config.appid, user, onEvent: addEvent });
      const client = wxauth.createClient({ baseURL: location.origin, wx: shim.wx, appid: config.appid });
      phones[user] = { shim, client };
    }
    return phones[user];
  }
  let current = phoneFor($('user').value);

  function showError(err) {
    $('error').textContent = err ? `${err.error || 'error'}: ${err.message}` : '';
  }

  function setLoggedIn(on) {
    for (const id of ['save', 'bind-phone', 'logout', 'avatar-file', 'board-text', 'post']) $(id).disabled = !on;
  }

  // The live board: one watch for the phone shown, kept while it is shown.
  let boardWatch = null;
  function watchBoard() {
    if (boardWatch) boardWatch.close();
    const phone = current;
    boardWatch = phone.client
      .data('board')
      .orderBy('created_at', 'asc')
      .limit(50)
      .watch({
        onChange(snapshot) {
          if (phone !== current) return;
          $('board').replaceChildren(
            ...snapshot.docs.map((doc) => {
              const li = document.createElement('li');
              li.textContent = `${doc.data.by}: ${doc.data.text}`;
              return li;
            })
          );
        },
        onError: showError,
      });
  }
  function stopBoard() {
    if (boardWatch) boardWatch.close();
    boardWatch = null;
    $('board').replaceChildren();
  }

  async function refresh() {
    const me = await current.client.me();
    $('status').textContent = 'logged in';
    $('openid').textContent = me.openid;
    $('unionid').textContent = me.unionid || '–';
    $('phone').textContent = me.phone ? me.phone.phone_number : 'not bound';
    showAvatar(me.profile.avatar_url);
    if (!boardWatch) watchBoard();
    // The query API, as in CloudBase: "open notes only" is a where().
    const _ = current.client.command;
    let notes = current.client.data('notes');
    if ($('open-only').checked) notes = notes.where({ done: _.neq(true) });
    notes = notes.orderBy('created_at', 'desc').limit(20);
    $('query').textContent =
      "client.data('notes')" +
      ($('open-only').checked ? '.where({ done: _.neq(true) })' : '') +
      ".orderBy('created_at', 'desc').limit(20).get()";
    const page = await notes.get();
    $('note-count').textContent = String((await notes.count()).total);
    $('notes').replaceChildren(
      ...page.data.map((doc) => {
        const li = document.createElement('li');
        li.textContent = `${doc.data.name}, ${doc.data.age}${doc.data.done ? ' ✓' : ''}`;
        const when = document.createElement('small');
        when.textContent = doc.created_at.slice(11, 19);
        li.appendChild(when);
        if (!doc.data.done) {
          const done = document.createElement('button');
          done.className = 'small done';
          done.textContent = 'done';
          done.addEventListener('click', () =>
            run(async () => {
              await current.client
                .data('notes')
                .doc(doc.id)
                .set(Object.assign({}, doc.data, { done: true }), { version: doc.version });
              await refresh();
            })
          );
          li.appendChild(done);
        }
        return li;
      })
    );
    setLoggedIn(true);
  }

  function showAvatar(url) {
    // <img src> sends no Authorization header: the file's URL is enough.
    // A new picture is pending WeChat's check (the simulator's, pushed back
    // within a second): its URL answers 404 until it passes, so a failed
    // load is tried again a few times.
    const img = $('avatar');
    img.hidden = !url;
    img.dataset.base = url || '';
    let tries = 0;
    img.onerror = () => {
      if (!url || img.dataset.base !== url || tries >= 20) return;
      tries++;
      setTimeout(() => {
        if (img.dataset.base === url) img.src = url + (url.includes('?') ? '&' : '?') + 'retry=' + tries;
      }, 250);
    };
    if (url) img.src = url;
    else img.removeAttribute('src');
  }

  function resetView() {
    $('status').textContent = 'not logged in';
    for (const id of ['openid', 'unionid', 'new-user', 'phone']) $(id).textContent = '–';
    $('notes').replaceChildren();
    $('note-count').textContent = '0';
    showAvatar(null);
    setLoggedIn(false);
  }

  async function run(fn) {
    showError(null);
    try {
      await fn();
    } catch (err) {
      showError(err);
    }
  }

  $('user').addEventListener('change', () =>
    run(async () => {
      current = phoneFor($('user').value);
      stopBoard();
      resetView();
      if (current.client.isLoggedIn()) await refresh();
    })
  );
  $('login').addEventListener('click', () =>
    run(async () => {
      const { new_user } = await current.client.login();
      $('new-user').textContent = String(new_user);
      await refresh();
    })
  );
  $('save').addEventListener('click', () =>
    run(async () => {
      await current.client.data('notes').create({ name: '张三', age: '20', done: false });
      await refresh();
    })
  );
  $('bind-phone').addEventListener('click', () =>
    run(async () => {
      const event = await current.shim.phoneNumberEvent();
      await current.client.bindPhone(event);
      await refresh();
    })
  );
  $('avatar-file').addEventListener('change', () =>
    run(async () => {
      const file = $('avatar-file').files[0];
      if (!file) return;
      // What <button open-type="chooseAvatar"> gives: a temporary file.
      const me = await current.client.setAvatar(current.shim.chooseAvatarEvent(file, file.name));
      $('avatar-file').value = '';
      showAvatar(me.profile.avatar_url);
    })
  );
  $('logout').addEventListener('click', () =>
    run(async () => {
      stopBoard();
      await current.client.logout();
      resetView();
    })
  );
  $('open-only').addEventListener('change', () =>
    run(async () => {
      if (current.client.isLoggedIn()) await refresh();
    })
  );
  $('post').addEventListener('click', () =>
    run(async () => {
      const text = $('board-text').value.trim() || '你好';
      await current.client.data('board').add({ by: $('user').value, text });
      $('board-text').value = '';
    })
  );
  $('clear').addEventListener('click', () => $('events').replaceChildren());
  document.body.dataset.ready = 'true';
})();
