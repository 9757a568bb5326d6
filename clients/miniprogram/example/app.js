// The client is utils/wxauth.js, a copy of clients/miniprogram/index.js
// (a mini program cannot require files outside its folder; a test checks the
// copy is identical: `npm run sync-example` refreshes it).
const { createClient } = require('./utils/wxauth.js');
const config = require('./config.js');

App({
  onLaunch() {
    this.client = createClient({ baseURL: config.baseURL });
    // Log in once at start; pages await `ready` before their first call.
    this.ready = this.client.login();
  },
});
