/**
 * A small stand-in for the mini program's `wx` object, built on fetch, so the
 * real client runs in Node (the tests) and in a browser (the playground):
 *
 * - wx.login asks the WeChat simulator for a code (/sim/v1/login), as the
 *   phone would give one for the chosen test user;
 * - wx.request makes a real HTTP call;
 * - wx.uploadFile sends a real multipart/form-data POST (formData fields,
 *   then the file part) of a temporary file made with addTempFile (what
 *   wx.chooseMedia or chooseAvatar would hand the mini program);
 * - wx.connectSocket opens a real WebSocket (the browser's, or the
 *   constructor passed as options.WebSocket, e.g. Node's `ws`) behind a
 *   SocketTask's onOpen/onMessage/onClose/onError/send/close;
 * - wx.requestSubscribeMessage answers the consent popup as the test user
 *   would (setSubscribeAnswer; accept by default), through /sim/v1/subscribe;
 * - wx.onAppHide / wx.onAppShow take their callbacks, which hideApp() and
 *   showApp() call, as the app going to the background and back would;
 * - wx.*StorageSync keep values in a Map.
 *
 * Every call is reported to `onEvent` and counted in `shim.counts`, so tests
 * and the playground can see exactly what the client did.
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory();
  } else {
    root.wxShim = factory();
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  function createWxShim(options) {
    const simURL = options.simURL.replace(/\/+$/, '');
    const storage = options.storage || new Map();
    const fetchFn = options.fetch || fetch;
    const onEvent = options.onEvent || function () {};
    const counts = { login: 0, request: 0, upload: 0, socket: 0, byPath: {} };
    const appHide = [];
    const appShow = [];
    const openSockets = new Set();
    const tempFiles = new Map(); // temporary file path -> Blob
    let tempCount = 0;
    let failNext = null; // { pathPrefix, method }: the next matching response is "lost"
    const state = { appid: options.appid, user: options.user };
    const subscribeAnswers = new Map(); // template id -> accept | reject | ban | filter

    function count(path) {
      counts.byPath[path] = (counts.byPath[path] || 0) + 1;
    }

    async function simPost(path, body) {
      const res = await fetchFn(simURL + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const data = await res.json();
      if (!res.ok) throw new Error(path + ': ' + (data.message || res.status));
      return data;
    }

    function parseHeaders(headers) {
      const out = {};
      headers.forEach(function (value, key) {
        out[key] = value;
      });
      return out;
    }

    const wx = {
      login: function (o) {
        counts.login++;
        simPost('/sim/v1/login', { appid: state.appid, user: state.user }).then(
          function (r) {
            onEvent({ kind: 'wx.login', user: state.user, code: r.code });
            o.success && o.success({ code: r.code, errMsg: 'login:ok' });
            o.complete && o.complete();
          },
          function (err) {
            o.fail && o.fail({ errMsg: 'login:fail ' + err.message });
            o.complete && o.complete();
          }
        );
      },
      request: function (o) {
        counts.request++;
        const method = (o.method || 'GET').toUpperCase();
        const url = new URL(o.url);
        count(method + ' ' + url.pathname);
        const headers = Object.assign({}, o.header || {});
        let body;
        if (o.data !== undefined && method !== 'GET') {
          body = typeof o.data === 'string' ? o.data : JSON.stringify(o.data);
        }
        const started = Date.now();
        fetchFn(o.url, { method: method, headers: headers, body: body })
          .then(async function (res) {
            const text = await res.text();
            let data = text;
            try {
              data = text ? JSON.parse(text) : '';
            } catch (e) {
              /* not JSON: keep the text, as wx.request does */
            }
            const lose = failNext && url.pathname.indexOf(failNext.pathPrefix) === 0 && method === failNext.method;
            onEvent({
              kind: 'request',
              method: method,
              path: url.pathname + url.search,
              requestBody: o.data,
              status: res.status,
              responseBody: data,
              ms: Date.now() - started,
              lost: !!lose,
            });
            if (lose) {
              // The server did the work, but the answer never arrives.
              failNext = null;
              o.fail && o.fail({ errMsg: 'request:fail timeout' });
            } else {
              o.success && o.success({ statusCode: res.status, data: data, header: parseHeaders(res.headers) });
            }
            o.complete && o.complete();
          })
          .catch(function (err) {
            onEvent({ kind: 'request', method: method, path: url.pathname, error: String(err) });
            o.fail && o.fail({ errMsg: 'request:fail ' + err.message });
            o.complete && o.complete();
          });
      },
      uploadFile: function (o) {
        counts.upload++;
        const url = new URL(o.url);
        count('POST ' + url.pathname);
        const blob = tempFiles.get(o.filePath);
        if (!blob) {
          setTimeout(function () {
            o.fail && o.fail({ errMsg: 'uploadFile:fail file not found: ' + o.filePath });
            o.complete && o.complete();
          }, 0);
          return;
        }
        const form = new FormData();
        Object.keys(o.formData || {}).forEach(function (k) {
          form.append(k, String(o.formData[k]));
        });
        form.append(o.name, blob, o.filePath.split('/').pop());
        const started = Date.now();
        fetchFn(o.url, { method: 'POST', headers: Object.assign({}, o.header || {}), body: form })
          .then(async function (res) {
            // wx.uploadFile gives the body as text, never parsed.
            const text = await res.text();
            let shown = text;
            try {
              shown = JSON.parse(text);
            } catch (e) {
              /* not JSON */
            }
            onEvent({
              kind: 'upload',
              method: 'POST',
              path: url.pathname,
              requestBody: Object.assign({ file: o.filePath + ' (' + blob.size + ' bytes)' }, o.formData || {}),
              status: res.status,
              responseBody: shown,
              ms: Date.now() - started,
            });
            o.success && o.success({ statusCode: res.status, data: text, header: parseHeaders(res.headers), errMsg: 'uploadFile:ok' });
            o.complete && o.complete();
          })
          .catch(function (err) {
            onEvent({ kind: 'upload', method: 'POST', path: url.pathname, error: String(err) });
            o.fail && o.fail({ errMsg: 'uploadFile:fail ' + err.message });
            o.complete && o.complete();
          });
      },
      // The consent popup: the test user answers each template as set by
      // setSubscribeAnswer (accept by default); accept and reject are
      // recorded by the simulator, which pushes the popup event to the
      // app's server as WeChat does.
      requestSubscribeMessage: function (o) {
        const ids = (o && o.tmplIds) || [];
        counts.subscribe = (counts.subscribe || 0) + 1;
        if (!Array.isArray(ids) || ids.length === 0 || ids.length > 3) {
          const err = { errMsg: 'requestSubscribeMessage:fail invalid tmplIds', errCode: 10001 };
          Promise.resolve().then(function () {
            o.fail && o.fail(err);
            o.complete && o.complete();
          });
          return;
        }
        const result = { errMsg: 'requestSubscribeMessage:ok' };
        Promise.all(
          ids.map(function (id) {
            const answer = subscribeAnswers.get(id) || 'accept';
            result[id] = answer;
            if (answer !== 'accept' && answer !== 'reject') return null;
            return simPost('/sim/v1/subscribe', {
              appid: state.appid,
              user: state.user,
              template_id: id,
              accept: answer === 'accept',
            });
          })
        )
          .then(function () {
            onEvent({ kind: 'subscribe popup', result: result });
            o.success && o.success(result);
            o.complete && o.complete();
          })
          .catch(function (err) {
            o.fail && o.fail({ errMsg: 'requestSubscribeMessage:fail ' + err.message });
            o.complete && o.complete();
          });
      },
      connectSocket: function (o) {
        const WS = options.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
        if (!WS) throw new Error('wx-shim: no WebSocket (pass options.WebSocket, e.g. require("ws"))');
        counts.socket++;
        const handlers = { open: [], message: [], close: [], error: [] };
        const socket = new WS(o.url);
        openSockets.add(socket);
        const path = new URL(o.url).pathname;
        onEvent({ kind: 'socket', path: path, state: 'connecting' });
        socket.onopen = function () {
          onEvent({ kind: 'socket', path: path, state: 'open' });
          handlers.open.forEach(function (f) { f({}); });
        };
        socket.onmessage = function (ev) {
          const data = typeof ev.data === 'string' ? ev.data : String(ev.data);
          onEvent({ kind: 'socket', path: path, received: data });
          handlers.message.forEach(function (f) { f({ data: data }); });
        };
        socket.onclose = function (ev) {
          openSockets.delete(socket);
          onEvent({ kind: 'socket', path: path, state: 'closed', code: ev.code, reason: ev.reason });
          handlers.close.forEach(function (f) { f({ code: ev.code, reason: ev.reason }); });
        };
        socket.onerror = function () {
          handlers.error.forEach(function (f) { f({ errMsg: 'socket error' }); });
        };
        return {
          onOpen: function (f) { handlers.open.push(f); },
          onMessage: function (f) { handlers.message.push(f); },
          onClose: function (f) { handlers.close.push(f); },
          onError: function (f) { handlers.error.push(f); },
          send: function (m) {
            try {
              socket.send(m.data);
              if (m.success) m.success({ errMsg: 'sendSocketMessage:ok' });
            } catch (err) {
              if (m.fail) m.fail({ errMsg: 'sendSocketMessage:fail ' + err.message });
            }
          },
          close: function (m) {
            try {
              socket.close((m && m.code) || 1000, (m && m.reason) || '');
            } catch (e) {
              socket.close();
            }
          },
        };
      },
      onAppHide: function (f) {
        appHide.push(f);
      },
      onAppShow: function (f) {
        appShow.push(f);
      },
      getStorageSync: function (key) {
        return storage.has(key) ? storage.get(key) : '';
      },
      setStorageSync: function (key, value) {
        storage.set(key, value);
      },
      removeStorageSync: function (key) {
        storage.delete(key);
      },
    };

    return {
      wx: wx,
      counts: counts,
      storage: storage,
      /** A temporary file of `bytes` (a Uint8Array, Buffer or Blob) named
       * `name`, as wx.chooseMedia gives one; its path for wx.uploadFile. */
      addTempFile: function (bytes, name, type) {
        tempCount++;
        const path = 'http://tmp/' + tempCount + '_' + String(name || 'file').replace(/[\/]/g, '_');
        tempFiles.set(path, bytes instanceof Blob ? bytes : new Blob([bytes], { type: type || '' }));
        return path;
      },
      /** The event <button open-type="chooseAvatar"> gives for a picture. */
      chooseAvatarEvent: function (bytes, name) {
        const path = this.addTempFile(bytes, name || 'avatar.png', 'image/png');
        onEvent({ kind: 'chooseAvatar', avatarUrl: path });
        return { type: 'chooseavatar', detail: { avatarUrl: path } };
      },
      /** The app goes to the background (wx.onAppHide's callbacks). */
      hideApp: function () {
        onEvent({ kind: 'app', state: 'hide' });
        appHide.forEach(function (f) { f({}); });
      },
      /** The app comes back (wx.onAppShow's callbacks). */
      showApp: function () {
        onEvent({ kind: 'app', state: 'show' });
        appShow.forEach(function (f) { f({}); });
      },
      /** Sockets open now. */
      openSocketCount: function () {
        return openSockets.size;
      },
      /** How the test user answers a template in the consent popup. */
      setSubscribeAnswer: function (templateId, answer) {
        subscribeAnswers.set(templateId, answer);
      },
      /** Switches the test user that wx.login speaks for. */
      setUser: function (user) {
        state.user = user;
      },
      /** Loses the answer of the next request matching method and path prefix. */
      loseNextResponse: function (method, pathPrefix) {
        failNext = { method: method, pathPrefix: pathPrefix };
      },
      /** The event the phone-number button gives (with a code from the simulator). */
      phoneNumberEvent: async function (phone) {
        const body = { appid: state.appid, user: state.user };
        if (phone) body.phone = phone;
        const r = await simPost('/sim/v1/phone-code', body);
        onEvent({ kind: 'phone button', code: r.code });
        return { type: 'getphonenumber', detail: { code: r.code, errMsg: 'getPhoneNumber:ok' } };
      },
      /** What wx.getUserInfo and friends give: { encryptedData, iv, rawData, signature }. */
      encryptedData: async function (data) {
        const r = await simPost('/sim/v1/encrypt', { appid: state.appid, user: state.user, data: data });
        return { encryptedData: r.encrypted_data, iv: r.iv, rawData: r.raw_data, signature: r.signature };
      },
      /** Makes the simulator misbehave (POST /sim/v1/faults). */
      fault: async function (spec) {
        const res = await fetchFn(simURL + '/sim/v1/faults', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(spec),
        });
        if (res.status !== 204) throw new Error('fault refused: ' + (await res.text()));
      },
    };
  }

  return { createWxShim: createWxShim };
});
