/**
 * wxauth client for WeChat Mini Programs.
 *
 * Plain JavaScript with no dependencies and no build step. It runs in a mini
 * program (using the global `wx`), and, with a `wx` object passed in, in Node
 * and in a browser (the tests and the playground do that).
 *
 *   const { createClient } = require('./wxauth')
 *   const client = createClient({ baseURL: 'https://api.example.com' })
 *   await client.login()
 *   const me = await client.me()
 *   await client.data('notes').create({ name: '张三', age: '20' })
 *   const _ = client.command
 *   const { data, nextCursor } = await client.data('todos')
 *     .where({ done: false, priority: _.gte(2) }).orderBy('priority', 'desc').limit(10).get()
 *
 * What it does for you:
 * - login(): wx.login -> POST /v1/login; keeps the tokens with
 *   wx.setStorageSync (never the session_key: the server never sends it).
 *   If the server says the code is invalid, one fresh wx.login and one retry.
 * - request(): like wx.request, with the bearer token. On 401: one refresh,
 *   and if that fails one new login, then the request once more. Any number
 *   of concurrent calls share one login and one refresh in flight. 429 and
 *   503 are retried after Retry-After, a bounded number of times.
 * - uploadFile(tempFilePath, { purpose, public }): wx.uploadFile to
 *   POST /v1/files with the session, the same refresh-and-retry on 401;
 *   setAvatar(event) does the whole <button open-type="chooseAvatar">
 *   flow; files() lists, reads and deletes the user's files.
 * - data(c).where(...).watch({ onChange, onError }): a live query over one
 *   WebSocket (wx.connectSocket to GET /v1/watch), CloudBase's snapshot
 *   shape; reconnects with backoff, refreshes the token first when it is
 *   about to expire or was refused, resumes where it left off (also after
 *   wx.onAppHide / onAppShow).
 * - Errors are WxauthError objects with the server's `error` code,
 *   `message`, `statusCode` and `requestId`.
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory();
  } else {
    root.wxauth = factory();
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  /** An error answered by wxauth (or a network failure, error 'network_error'). */
  class WxauthError extends Error {
    constructor(statusCode, body, header) {
      const b = body && typeof body === 'object' ? body : {};
      super(b.message || (statusCode ? 'HTTP ' + statusCode : 'request failed'));
      this.name = 'WxauthError';
      this.error = b.error || (statusCode ? 'http_' + statusCode : 'network_error');
      this.statusCode = statusCode || 0;
      this.requestId = b.request_id || headerValue(header, 'x-request-id') || '';
      if (b.field !== undefined) this.field = b.field;
      if (b.label !== undefined) this.label = b.label;
    }
  }

  function headerValue(header, name) {
    if (!header) return undefined;
    const wanted = name.toLowerCase();
    for (const key of Object.keys(header)) {
      if (key.toLowerCase() === wanted) return header[key];
    }
    return undefined;
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  function randomKey() {
    let s = Date.now().toString(36) + '-';
    for (let i = 0; i < 4; i++) s += Math.random().toString(36).slice(2, 10);
    return s;
  }

  const SAFE_METHODS = { GET: true, HEAD: true, OPTIONS: true };

  /**
   * Creates a client.
   * @param {object} options
   * @param {string} options.baseURL wxauth's URL, e.g. https://api.example.com
   * @param {string} [options.appid] the mini program's appid (when the server serves several)
   * @param {string} [options.storageKey] where tokens are kept (default 'wxauth')
   * @param {number} [options.maxRetries] retries after 429/503 or a network error (default 2)
   * @param {number} [options.maxRetryAfterMs] longest wait honoured from Retry-After (default 10000)
   * @param {object} [options.wx] the wx API (default: the global wx)
   */
  function createClient(options) {
    const opts = options || {};
    if (!opts.baseURL) throw new Error('wxauth: createClient needs a baseURL');
    const wxApi = opts.wx || (typeof wx !== 'undefined' ? wx : undefined); // eslint-disable-line no-undef
    if (!wxApi) throw new Error('wxauth: no wx API (pass options.wx outside a mini program)');
    const baseURL = opts.baseURL.replace(/\/+$/, '');
    const storageKey = opts.storageKey || 'wxauth';
    const maxRetries = opts.maxRetries === undefined ? 2 : opts.maxRetries;
    const maxRetryAfterMs = opts.maxRetryAfterMs === undefined ? 10000 : opts.maxRetryAfterMs;
    let loginInFlight = null;
    let refreshInFlight = null;

    function loadTokens() {
      try {
        const t = wxApi.getStorageSync(storageKey);
        return t && t.access_token ? t : null;
      } catch (e) {
        return null;
      }
    }

    function saveTokens(body) {
      const tokens = {
        access_token: body.access_token,
        refresh_token: body.refresh_token,
        expires_at: Date.now() + body.expires_in * 1000,
        user: body.user,
      };
      wxApi.setStorageSync(storageKey, tokens);
      return tokens;
    }

    function clearTokens() {
      try {
        wxApi.removeStorageSync(storageKey);
      } catch (e) {
        /* nothing stored */
      }
    }

    function wxLogin() {
      return new Promise(function (resolve, reject) {
        wxApi.login({
          success: function (res) {
            if (res && res.code) resolve(res.code);
            else reject(new WxauthError(0, { error: 'wx_login_failed', message: 'wx.login gave no code' }));
          },
          fail: function (err) {
            reject(new WxauthError(0, { error: 'wx_login_failed', message: (err && err.errMsg) || 'wx.login failed' }));
          },
        });
      });
    }

    /** One HTTP exchange through wx.request; resolves with any status. */
    function send(method, url, data, header) {
      return new Promise(function (resolve, reject) {
        wxApi.request({
          url: /^https?:\/\//.test(url) ? url : baseURL + url,
          method: method,
          data: data,
          header: header,
          success: function (res) {
            resolve(res);
          },
          fail: function (err) {
            reject(new WxauthError(0, { error: 'network_error', message: (err && err.errMsg) || 'network error' }));
          },
        });
      });
    }

    function retryDelay(res, attempt) {
      const after = Number(headerValue(res && res.header, 'retry-after'));
      const ms = isFinite(after) && after >= 0 ? after * 1000 : 500 * Math.pow(2, attempt);
      return Math.min(ms, maxRetryAfterMs);
    }

    /**
     * Sends with bounded retries: 429/503 after Retry-After; network errors
     * only when repeating is safe (GET, or a create with its Idempotency-Key).
     */
    async function sendRetrying(method, url, data, header, repeatable) {
      for (let attempt = 0; ; attempt++) {
        let res;
        try {
          res = await send(method, url, data, header);
        } catch (err) {
          if (repeatable && attempt < maxRetries) {
            await sleep(retryDelay(null, attempt));
            continue;
          }
          throw err;
        }
        if ((res.statusCode === 429 || res.statusCode === 503) && attempt < maxRetries) {
          await sleep(retryDelay(res, attempt));
          continue;
        }
        return res;
      }
    }

    async function doLogin() {
      let code = await wxLogin();
      for (let attempt = 0; attempt < 2; attempt++) {
        const body = { code: code };
        if (opts.appid) body.appid = opts.appid;
        // The server answers a repeated code like the first time, so a
        // login may be retried with the same code.
        const res = await sendRetrying('POST', '/v1/login', body, { 'content-type': 'application/json' }, true);
        if (res.statusCode === 200) {
          const tokens = saveTokens(res.data);
          return { user: res.data.user, new_user: res.data.new_user, tokens: tokens };
        }
        const err = new WxauthError(res.statusCode, res.data, res.header);
        if (err.error === 'invalid_code' && attempt === 0) {
          code = await wxLogin();
          continue;
        }
        throw err;
      }
      throw new WxauthError(400, { error: 'invalid_code', message: 'login failed twice' });
    }

    /** Logs in (or joins the login already in flight). */
    function login() {
      if (!loginInFlight) {
        loginInFlight = doLogin().finally(function () {
          loginInFlight = null;
        });
      }
      return loginInFlight;
    }

    async function doRefresh(tokens) {
      const res = await sendRetrying(
        'POST',
        '/v1/token/refresh',
        { refresh_token: tokens.refresh_token },
        { 'content-type': 'application/json' },
        false
      );
      if (res.statusCode === 200) return saveTokens(res.data);
      throw new WxauthError(res.statusCode, res.data, res.header);
    }

    /** After a 401 with `failedToken`: refresh once, else log in again. */
    async function recover(failedToken) {
      const current = loadTokens();
      if (current && current.access_token !== failedToken) return current; // someone else already did
      if (loginInFlight) return (await loginInFlight).tokens;
      if (current && current.refresh_token) {
        if (!refreshInFlight) {
          refreshInFlight = doRefresh(current).finally(function () {
            refreshInFlight = null;
          });
        }
        try {
          return await refreshInFlight;
        } catch (err) {
          if (err.statusCode !== 401) throw err;
          clearTokens();
        }
      }
      return (await login()).tokens;
    }

    async function accessToken() {
      const tokens = loadTokens();
      if (tokens) return tokens.access_token;
      return (await login()).tokens.access_token;
    }

    /**
     * Like wx.request, with the session attached (only for paths on
     * baseURL: the token never goes to another host). Resolves with
     * { statusCode, data, header } for 2xx; rejects with WxauthError.
     * @param {{url: string, method?: string, data?: any, header?: object}} o
     */
    async function request(o) {
      // The token is for wxauth only: never attach it to another host.
      if (/^https?:\/\//i.test(o.url) && o.url.indexOf(baseURL + '/') !== 0) {
        throw new WxauthError(0, {
          error: 'invalid_request',
          message: 'request() only calls ' + baseURL + '; use wx.request for other hosts',
        });
      }
      const method = (o.method || 'GET').toUpperCase();
      const header = Object.assign({}, o.header || {});
      if (o.data !== undefined && !headerValue(header, 'content-type')) header['content-type'] = 'application/json';
      const repeatable = SAFE_METHODS[method] === true || headerValue(header, 'idempotency-key') !== undefined;
      let token = await accessToken();
      for (let attempt = 0; attempt < 2; attempt++) {
        header.Authorization = 'Bearer ' + token;
        const res = await sendRetrying(method, o.url, o.data, header, repeatable);
        if (res.statusCode === 401 && attempt === 0) {
          token = (await recover(token)).access_token;
          continue;
        }
        if (res.statusCode >= 200 && res.statusCode < 300) return res;
        throw new WxauthError(res.statusCode, res.data, res.header);
      }
      throw new WxauthError(401, { error: 'unauthorized', message: 'still unauthorized after logging in again' });
    }

    /** One upload through wx.uploadFile; resolves with any status (its
     * body parsed: wx.uploadFile gives it as text). */
    function sendFile(filePath, name, formData, header) {
      return new Promise(function (resolve, reject) {
        wxApi.uploadFile({
          url: baseURL + '/v1/files',
          filePath: filePath,
          name: name,
          formData: formData,
          header: header,
          success: function (res) {
            let data = res.data;
            if (typeof data === 'string') {
              try {
                data = data ? JSON.parse(data) : '';
              } catch (e) {
                /* not JSON: keep the text */
              }
            }
            resolve({ statusCode: res.statusCode, data: data, header: res.header || {} });
          },
          fail: function (err) {
            reject(new WxauthError(0, { error: 'network_error', message: (err && err.errMsg) || 'upload failed' }));
          },
        });
      });
    }

    /** A file's url as <image src> needs it: absolute (the server gives a
     * path when it does not know its public address). */
    function absoluteFile(file) {
      if (file && typeof file.url === 'string' && file.url.charAt(0) === '/') file.url = baseURL + file.url;
      return file;
    }

    /**
     * Uploads a temporary file (from wx.chooseMedia, chooseAvatar,
     * wx.chooseMessageFile...) with the session; on 401 one refresh (or
     * login) and one more try; 429/503 (nothing stored) retried after
     * Retry-After. A network failure is not retried: the file may have
     * been stored.
     */
    async function uploadFile(filePath, o) {
      const options = o || {};
      if (typeof filePath !== 'string' || !filePath) {
        throw new WxauthError(0, { error: 'invalid_request', message: 'uploadFile needs a temporary file path' });
      }
      const formData = { purpose: options.purpose || 'attachment' };
      if (options.public !== undefined) formData.public = options.public ? 'true' : 'false';
      const name = options.name || 'file';
      let token = await accessToken();
      for (let attempt = 0; attempt < 2; attempt++) {
        let res;
        for (let retry = 0; ; retry++) {
          res = await sendFile(filePath, name, formData, { Authorization: 'Bearer ' + token });
          if ((res.statusCode === 429 || res.statusCode === 503) && retry < maxRetries) {
            await sleep(retryDelay(res, retry));
            continue;
          }
          break;
        }
        if (res.statusCode === 401 && attempt === 0) {
          token = (await recover(token)).access_token;
          continue;
        }
        if (res.statusCode >= 200 && res.statusCode < 300) return absoluteFile(res.data);
        throw new WxauthError(res.statusCode, res.data, res.header);
      }
      throw new WxauthError(401, { error: 'unauthorized', message: 'still unauthorized after logging in again' });
    }

    async function call(method, url, data, header) {
      return (await request({ method: method, url: url, data: data, header: header })).data;
    }

    function path(collection, id) {
      const base = '/v1/data/' + encodeURIComponent(collection);
      return id === undefined ? base : base + '/' + encodeURIComponent(id);
    }

    // --- Realtime: one socket per client (GET /v1/watch) carrying every
    // watch, reconnected with backoff and resumed from each watch's cursor.
    const sockets = makeSockets();

    function makeSockets() {
      const watches = new Map(); // id -> watch
      let task = null;
      let opened = false;
      let attempt = 0;
      let retryTimer = null;
      let hidden = false;
      let nextId = 0;
      let refreshBeforeConnect = false;
      const wsURL = baseURL.replace(/^http/i, 'ws') + '/v1/watch';

      if (typeof wxApi.onAppHide === 'function' && typeof wxApi.onAppShow === 'function') {
        // In the background a mini program's sockets are cut: close it
        // cleanly, and resume every watch when the app comes back.
        wxApi.onAppHide(function () {
          hidden = true;
          closeSocket();
        });
        wxApi.onAppShow(function () {
          hidden = false;
          attempt = 0;
          ensure();
        });
      }

      function sendJSON(message) {
        if (task && opened) task.send({ data: JSON.stringify(message) });
      }

      function watchMessage(w) {
        const m = { type: 'watch', id: w.id, collection: w.collection };
        if (w.where !== undefined) m.where = w.where;
        if (w.order.length) m.order_by = w.order.join(',');
        if (w.limit !== undefined) m.limit = w.limit;
        if (w.cursor) m.resume_after = w.cursor;
        return m;
      }

      function closeSocket() {
        if (retryTimer) {
          clearTimeout(retryTimer);
          retryTimer = null;
        }
        if (task) {
          const t = task;
          task = null;
          opened = false;
          try {
            t.close({ code: 1000, reason: 'closed by the client' });
          } catch (e) {
            /* already closed */
          }
        }
      }

      function scheduleReconnect() {
        if (retryTimer || hidden || watches.size === 0) return;
        const delay = Math.min(30000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
        attempt++;
        retryTimer = setTimeout(function () {
          retryTimer = null;
          ensure();
        }, delay);
      }

      async function connect() {
        let token;
        try {
          const tokens = loadTokens();
          // A token that expires within 30 s (or was refused) is renewed
          // first: the socket would close at its expiry.
          if (refreshBeforeConnect || (tokens && tokens.expires_at - Date.now() < 30000)) {
            token = (await recover(tokens ? tokens.access_token : '')).access_token;
            refreshBeforeConnect = false;
          } else {
            token = await accessToken();
          }
        } catch (err) {
          watches.forEach(function (w) { w.fail(err); });
          scheduleReconnect();
          return;
        }
        if (task || hidden || watches.size === 0) return;
        const t = wxApi.connectSocket({ url: wsURL });
        task = t;
        t.onOpen(function () {
          if (task !== t) return;
          opened = true;
          t.send({ data: JSON.stringify({ type: 'auth', access_token: token }) });
          watches.forEach(function (w) { sendJSON(watchMessage(w)); });
        });
        t.onMessage(function (res) {
          if (task !== t) return;
          let m;
          try {
            m = JSON.parse(res.data);
          } catch (e) {
            return;
          }
          attempt = 0;
          const w = m.id !== undefined ? watches.get(m.id) : undefined;
          if (m.type === 'error') {
            const err = new WxauthError(0, m);
            if (w) {
              // The server refused the watch itself: it is over.
              watches.delete(w.id);
              w.fail(err);
            } else if (m.error === 'unauthorized') {
              refreshBeforeConnect = true;
            }
            return;
          }
          if (w) w.receive(m);
        });
        t.onClose(function (res) {
          if (task !== t) return;
          task = null;
          opened = false;
          const code = res && res.code;
          if (code === 4401) refreshBeforeConnect = true;
          scheduleReconnect();
        });
        t.onError(function () {
          /* onClose follows */
        });
      }

      function ensure() {
        if (!task && !retryTimer && !hidden && watches.size > 0) connect();
      }

      return {
        add: function (w) {
          w.id = 'w' + ++nextId;
          watches.set(w.id, w);
          if (task && opened) sendJSON(watchMessage(w));
          else ensure();
        },
        remove: function (w) {
          if (!watches.delete(w.id)) return;
          sendJSON({ type: 'unwatch', id: w.id });
          if (watches.size === 0) closeSocket();
        },
        stop: function () {
          watches.forEach(function (w) { w.closed = true; });
          watches.clear();
          closeSocket();
        },
      };
    }

    /** A watch of a query: keeps its documents and tells `onChange` of
     * every change as CloudBase's snapshots do. */
    function startWatch(collection, state, o) {
      if (!o || typeof o.onChange !== 'function') {
        throw new TypeError('watch takes { onChange(snapshot), onError(err) }');
      }
      let docs = [];
      let eventId = 0;
      const keys = sortKeys(state.order);
      const w = {
        collection: collection,
        where: state.where,
        order: state.order,
        limit: state.limit,
        cursor: null,
        closed: false,
        fail: function (err) {
          if (w.closed) return;
          if (o.onError) o.onError(err);
        },
        receive: function (m) {
          if (w.closed) return;
          if (m.cursor) w.cursor = m.cursor;
          eventId++;
          if (m.type === 'init') {
            docs = m.docs.slice();
            o.onChange({
              id: eventId,
              type: 'init',
              docs: docs.slice(),
              docChanges: docs.map(function (d) {
                return { id: eventId, dataType: 'init', queueType: 'init', docId: d.id, doc: d };
              }),
            });
            return;
          }
          if (m.type !== 'change') return;
          const changes = [];
          m.changes.forEach(function (c) {
            const at = docs.findIndex(function (d) { return d.id === c.doc_id; });
            if (c.op === 'remove') {
              if (at < 0) return; // (a resume can name documents never shown)
              const gone = docs.splice(at, 1)[0];
              changes.push({ id: eventId, dataType: 'remove', queueType: 'dequeue', docId: c.doc_id, doc: gone });
              return;
            }
            if (at >= 0) docs.splice(at, 1);
            docs.push(c.doc);
            docs.sort(function (a, b) { return compareDocs(keys, a, b); });
            const change = {
              id: eventId,
              dataType: at >= 0 ? 'update' : 'add',
              queueType: at >= 0 ? 'update' : 'enqueue',
              docId: c.doc_id,
              doc: c.doc,
            };
            if (c.op === 'update' && at >= 0) {
              change.updatedFields = c.updated_fields || {};
              change.removedFields = c.removed_fields || [];
            }
            changes.push(change);
          });
          if (changes.length) o.onChange({ id: eventId, docs: docs.slice(), docChanges: changes });
        },
      };
      sockets.add(w);
      return {
        close: function () {
          if (w.closed) return;
          w.closed = true;
          sockets.remove(w);
        },
      };
    }

    /** A query on a collection; each method returns a new query (CloudBase style). */
    function makeQuery(collection, state) {
      function next(change) {
        return makeQuery(collection, Object.assign({}, state, change));
      }
      function queryString(withPaging) {
        const q = [];
        if (state.where !== undefined) q.push('where=' + encodeURIComponent(JSON.stringify(state.where)));
        if (withPaging) {
          if (state.order.length) q.push('order_by=' + encodeURIComponent(state.order.join(',')));
          if (state.limit !== undefined) q.push('limit=' + encodeURIComponent(state.limit));
          if (state.cursor) q.push('cursor=' + encodeURIComponent(state.cursor));
        }
        return q.length ? '?' + q.join('&') : '';
      }
      return {
        /** Filters: { done: false, priority: _.gte(2) }, or _.or([...]). */
        where: function (where) {
          return next({ where: encodeWhere(where) });
        },
        /** Adds a sort key: orderBy('priority', 'desc'). */
        orderBy: function (field, order) {
          if (order !== undefined && order !== 'asc' && order !== 'desc') {
            throw new TypeError("orderBy's order is 'asc' or 'desc'");
          }
          return next({ order: state.order.concat([(order === 'desc' ? '-' : '') + field]) });
        },
        limit: function (n) {
          return next({ limit: n });
        },
        /** Continues after a page: pass the nextCursor of the previous get(). */
        startAfter: function (cursor) {
          return next({ cursor: cursor || undefined });
        },
        /** One page: { data: [documents], nextCursor } (null on the last page). */
        get: async function () {
          const page = await call('GET', path(collection) + queryString(true));
          return { data: page.items, nextCursor: page.next_cursor };
        },
        /** How many documents match: { total }. */
        count: async function () {
          const res = await call('GET', path(collection) + '/_count' + queryString(false));
          return { total: res.count };
        },
        /**
         * Watches the query: onChange(snapshot) first with every matching
         * document (type 'init'), then with each change ({ docs,
         * docChanges: [{ dataType: 'add'|'update'|'remove', queueType,
         * docId, doc, updatedFields?, removedFields? }] }). Reconnects and
         * resumes by itself (also after the app was in the background).
         * Returns { close() }.
         */
        watch: function (o) {
          return startWatch(collection, state, o);
        },
      };
    }

    return {
      login: login,
      request: request,
      /** Ends the session on the server and forgets the tokens (and
       * closes every watch: they were the session's). */
      logout: async function () {
        sockets.stop();
        const tokens = loadTokens();
        if (tokens) {
          try {
            await send('POST', '/v1/logout', undefined, { Authorization: 'Bearer ' + tokens.access_token });
          } finally {
            clearTokens();
          }
        }
      },
      /** Whether tokens are stored. */
      isLoggedIn: function () {
        return loadTokens() !== null;
      },
      /** The user stored with the tokens (from the last login or refresh). */
      currentUser: function () {
        const t = loadTokens();
        return t ? t.user : null;
      },
      me: function () {
        return call('GET', '/v1/me');
      },
      /** Everything the server holds about the user, as one object (GET /v1/me/export). */
      exportMyData: function () {
        return call('GET', '/v1/me/export');
      },
      /**
       * Deletes the user's account and all their data on the server, then
       * forgets the tokens. Irreversible: ask the user first. A later login
       * with the same WeChat account is a new user.
       */
      deleteAccount: async function () {
        await call('DELETE', '/v1/me', { confirm: 'delete my account' });
        clearTokens();
      },
      updateProfile: function (profile) {
        return call('PATCH', '/v1/me', { profile: profile });
      },
      uploadFile: uploadFile,
      /**
       * Takes the event of <button open-type="chooseAvatar"
       * bindchooseavatar="…"> (or its detail.avatarUrl): uploads the
       * picture as the user's avatar (public) and sets profile.avatar_url.
       * Resolves with the user (GET /v1/me's shape).
       */
      setAvatar: async function (event) {
        const chosen =
          typeof event === 'string' ? event : event && ((event.detail && event.detail.avatarUrl) || event.avatarUrl);
        if (!chosen) {
          throw new WxauthError(0, {
            error: 'invalid_request',
            message: 'setAvatar takes the chooseAvatar event (or its detail.avatarUrl)',
          });
        }
        const file = await uploadFile(chosen, { purpose: 'avatar' });
        return call('PATCH', '/v1/me', { profile: { avatar_file: file.id } });
      },
      /** The user's own files: list({ limit, cursor }), get(id), delete(id). */
      files: function () {
        const base = '/v1/files';
        return {
          /** A page, newest first: { items, nextCursor } (null on the last page). */
          list: async function (o) {
            const q = [];
            if (o && o.limit) q.push('limit=' + encodeURIComponent(o.limit));
            if (o && o.cursor) q.push('cursor=' + encodeURIComponent(o.cursor));
            const page = await call('GET', base + (q.length ? '?' + q.join('&') : ''));
            return { items: page.items.map(absoluteFile), nextCursor: page.next_cursor };
          },
          /** One file's metadata, with a fresh URL (a private file's URL expires). */
          get: async function (id) {
            return absoluteFile(await call('GET', base + '/' + encodeURIComponent(id)));
          },
          /** Deletes a file: its URLs answer 404 from now on. */
          delete: async function (id) {
            await call('DELETE', base + '/' + encodeURIComponent(id));
          },
        };
      },
      /** Takes the event of <button open-type="getPhoneNumber" bindgetphonenumber="…">. */
      bindPhone: function (event) {
        const detail = (event && event.detail) || event || {};
        if (!detail.code) {
          return Promise.reject(
            new WxauthError(0, {
              error: 'no_phone_code',
              message: detail.errMsg || 'the getPhoneNumber event has no code (the user declined, or base library < 2.21.2)',
            })
          );
        }
        return call('POST', '/v1/me/phone', { code: detail.code });
      },
      /**
       * Asks the user to accept subscribe messages of 1 to 3 templates
       * (wx.requestSubscribeMessage: call it from a tap), and reports the
       * answers to wxauth, which then lets the operator send each accepted
       * template once. Resolves with what WeChat answered:
       * { errMsg, [templateId]: 'accept' | 'reject' | 'ban' | 'filter' }.
       */
      requestSubscribe: async function (templateIds) {
        const ids = Array.isArray(templateIds) ? templateIds : [templateIds];
        if (ids.length === 0 || ids.length > 3 || ids.some((id) => typeof id !== 'string' || !id)) {
          throw new WxauthError(0, {
            error: 'invalid_request',
            message: 'requestSubscribe takes 1 to 3 template ids (wx.requestSubscribeMessage takes at most 3 at once)',
          });
        }
        const result = await new Promise(function (resolve, reject) {
          wxApi.requestSubscribeMessage({
            tmplIds: ids,
            success: resolve,
            fail: function (e) {
              reject(
                new WxauthError(0, {
                  error: 'subscribe_failed',
                  message: (e && e.errMsg) || 'wx.requestSubscribeMessage failed',
                })
              );
            },
          });
        });
        await call('POST', '/v1/me/subscriptions', result);
        return result;
      },
      /** Decrypts wx.getUserInfo / wx.getWeRunData style payloads on the server. */
      decrypt: function (payload) {
        const body = { encrypted_data: payload.encryptedData, iv: payload.iv };
        if (payload.rawData !== undefined) body.raw_data = payload.rawData;
        if (payload.signature !== undefined) body.signature = payload.signature;
        return call('POST', '/v1/me/decrypt', body);
      },
      /** Query operators: client.data('todos').where({ priority: _.gte(2) }) with _ = client.command. */
      command: command,
      /** The documents of one collection the caller can read (own; in shared collections, the app's). */
      data: function (collection) {
        const query = makeQuery(collection, { order: [] });
        return Object.assign({}, query, {
          /** Like create (CloudBase's name). */
          add: function (doc, o) {
            const key = (o && o.idempotencyKey) || randomKey();
            return call('POST', path(collection), doc, { 'Idempotency-Key': key });
          },
          /** get(id): one document; get(): the first page of the collection (like a query). */
          get: function (id) {
            if (id === undefined) return query.get();
            return call('GET', path(collection, id));
          },
          /** One document: .doc(id).get() → { data: document }, .set(doc, o), .remove(). */
          doc: function (id) {
            return {
              get: async function () {
                return { data: await call('GET', path(collection, id)) };
              },
              set: function (doc, o) {
                const header = {};
                if (o && o.ifMatch) header['If-Match'] = o.ifMatch;
                else if (o && o.version !== undefined) header['If-Match'] = '"' + o.version + '"';
                return call('PUT', path(collection, id), doc, header);
              },
              remove: function () {
                return call('DELETE', path(collection, id));
              },
            };
          },
          /** Stores a document; retries are safe (one Idempotency-Key per call). */
          create: function (doc, o) {
            const key = (o && o.idempotencyKey) || randomKey();
            return call('POST', path(collection), doc, { 'Idempotency-Key': key });
          },
          list: function (o) {
            const q = [];
            if (o && o.limit) q.push('limit=' + encodeURIComponent(o.limit));
            if (o && o.cursor) q.push('cursor=' + encodeURIComponent(o.cursor));
            return call('GET', path(collection) + (q.length ? '?' + q.join('&') : ''));
          },
          /** Replaces a document; with o.version (or o.ifMatch) only if it is still that version. */
          update: function (id, doc, o) {
            const header = {};
            if (o && o.ifMatch) header['If-Match'] = o.ifMatch;
            else if (o && o.version !== undefined) header['If-Match'] = '"' + o.version + '"';
            return call('PUT', path(collection, id), doc, header);
          },
          remove: function (id) {
            return call('DELETE', path(collection, id));
          },
        });
      },
    };
  }

  // --- The order of a watch's documents, as the server sorts them: by
  // type (missing, null, false, true, numbers, strings, arrays, objects),
  // then numbers by value and strings by their characters; ties by
  // created_at, then id, in the last key's direction.

  function sortKeys(order) {
    const keys = order.map(function (k) {
      return k[0] === '-' ? { path: k.slice(1), desc: true } : { path: k.replace(/^\+/, ''), desc: false };
    });
    if (!keys.length) keys.push({ path: 'created_at', desc: true });
    if (!keys.some(function (k) { return k.path === 'created_at'; })) {
      keys.push({ path: 'created_at', desc: keys[keys.length - 1].desc });
    }
    return keys;
  }

  const OWN_FIELDS = { id: true, owner: true, created_at: true, updated_at: true };

  function fieldOf(doc, path) {
    if (OWN_FIELDS[path]) return doc[path];
    let at = doc.data;
    for (const part of path.split('.')) {
      if (at === null || typeof at !== 'object' || Array.isArray(at) || !(part in at)) return undefined;
      at = at[part];
    }
    return at;
  }

  function rank(v) {
    if (v === undefined) return 0;
    if (v === null) return 1;
    if (v === false) return 2;
    if (v === true) return 3;
    if (typeof v === 'number') return 4;
    if (typeof v === 'string') return 5;
    if (Array.isArray(v)) return 6;
    return 7;
  }

  function compareValues(a, b) {
    const ra = rank(a);
    const rb = rank(b);
    if (ra !== rb) return ra - rb;
    if ((ra === 4 || ra === 5) && a !== b) return a < b ? -1 : 1;
    return 0;
  }

  function compareDocs(keys, a, b) {
    for (const k of keys) {
      const c = compareValues(fieldOf(a, k.path), fieldOf(b, k.path));
      if (c !== 0) return k.desc ? -c : c;
    }
    const c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return keys[keys.length - 1].desc ? -c : c;
  }

  // --- Query operators (client.command), shaped like CloudBase's db.command.

  /** An operator on one field (_.gt(1)), or a logic of several (_.or([...])). */
  function Command(op, value) {
    this.op = op;
    this.value = value;
  }
  Command.prototype.and = function () {
    return new Command('and', [this].concat(flatArgs(arguments)));
  };
  Command.prototype.or = function () {
    return new Command('or', [this].concat(flatArgs(arguments)));
  };

  function flatArgs(args) {
    const list = Array.prototype.slice.call(args);
    return list.length === 1 && Array.isArray(list[0]) ? list[0] : list;
  }

  function literal(v) {
    return v instanceof Date ? v.toISOString() : v;
  }

  const command = {
    eq: function (v) { return new Command('$eq', literal(v)); },
    neq: function (v) { return new Command('$ne', literal(v)); },
    gt: function (v) { return new Command('$gt', literal(v)); },
    gte: function (v) { return new Command('$gte', literal(v)); },
    lt: function (v) { return new Command('$lt', literal(v)); },
    lte: function (v) { return new Command('$lte', literal(v)); },
    in: function (values) { return new Command('$in', values.map(literal)); },
    nin: function (values) { return new Command('$nin', values.map(literal)); },
    exists: function (b) { return new Command('$exists', b !== false); },
    /** _.and([where, ...]) for a whole query, or _.and(_.gt(1), _.lt(5)) on a field. */
    and: function () { return new Command('and', flatArgs(arguments)); },
    or: function () { return new Command('or', flatArgs(arguments)); },
  };

  function isPlainObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date) && !(v instanceof Command);
  }

  /** A field's condition as where clauses ({ path: value } objects). */
  function fieldClauses(fieldPath, value) {
    if (value instanceof Command) {
      if (value.op === 'and' || value.op === 'or') {
        const parts = value.value.map(function (c) { return joinClauses(fieldClauses(fieldPath, c)); });
        if (value.op === 'and') return parts;
        const or = {};
        or.$or = parts;
        return [or];
      }
      const clause = {};
      clause[fieldPath] = {};
      clause[fieldPath][value.op] = value.value;
      return [clause];
    }
    if (isPlainObject(value)) {
      let out = [];
      Object.keys(value).forEach(function (k) {
        out = out.concat(fieldClauses(fieldPath + '.' + k, value[k]));
      });
      return out;
    }
    const eq = {};
    eq[fieldPath] = literal(value);
    return [eq];
  }

  /** Clauses merged into one where object; what cannot merge goes under $and. */
  function joinClauses(clauses) {
    const out = {};
    const rest = [];
    clauses.forEach(function (c) {
      const key = Object.keys(c)[0];
      const v = c[key];
      if (!(key in out) && key !== '$or') {
        out[key] = v;
      } else if (isPlainObject(out[key]) && isPlainObject(v) && key !== '$or' &&
        Object.keys(v).every(function (op) { return op[0] === '$' && !(op in out[key]); }) &&
        Object.keys(out[key]).every(function (op) { return op[0] === '$'; })) {
        Object.assign(out[key], v);
      } else {
        rest.push(c);
      }
    });
    if (rest.length) out.$and = (out.$and || []).concat(rest);
    return out;
  }

  /** A where argument (object with commands, or _.and/_.or) as the JSON the server reads. */
  function encodeWhere(where) {
    if (where instanceof Command) {
      if (where.op !== 'and' && where.op !== 'or') {
        throw new TypeError('where takes an object of fields, or _.and / _.or of such objects');
      }
      const out = {};
      out['$' + where.op] = where.value.map(encodeWhere);
      return out;
    }
    if (!isPlainObject(where)) throw new TypeError('where takes an object, e.g. { done: false }');
    let clauses = [];
    Object.keys(where).forEach(function (k) {
      clauses = clauses.concat(fieldClauses(k, where[k]));
    });
    return joinClauses(clauses);
  }

  return { createClient: createClient, WxauthError: WxauthError, command: command };
});
