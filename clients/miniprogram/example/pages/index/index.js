const app = getApp();

Page({
  data: {
    user: null,
    notes: [],
    board: [],
    phone: null,
    avatarUrl: '',
    saving: false,
    error: '',
  },

  async onLoad() {
    try {
      await app.ready;
      const me = await app.client.me();
      this.setData({ user: me, phone: me.phone, avatarUrl: me.profile.avatar_url || '' });
      await this.loadNotes();
      // The live board (a shared collection in `wxauth dev`): every user's
      // posts, pushed as they are written.
      this.boardWatch = app.client
        .data('board')
        .orderBy('created_at', 'asc')
        .limit(50)
        .watch({
          onChange: (snapshot) => this.setData({ board: snapshot.docs }),
          onError: (err) => this.showError(err),
        });
    } catch (err) {
      this.showError(err);
    }
  },

  onUnload() {
    if (this.boardWatch) this.boardWatch.close();
  },

  async postToBoard() {
    try {
      await app.client.data('board').add({ by: this.data.user.openid.slice(-6), text: '你好' });
    } catch (err) {
      this.showError(err);
    }
  },

  async loadNotes() {
    const page = await app.client.data('notes').list({ limit: 20 });
    this.setData({ notes: page.items });
  },

  // The server knows who the user is from the token: the note carries no openid.
  async saveNote() {
    this.setData({ saving: true, error: '' });
    try {
      await app.client.data('notes').create({ name: '张三', age: '20' });
      await this.loadNotes();
    } catch (err) {
      this.showError(err);
    } finally {
      this.setData({ saving: false });
    }
  },

  async onGetPhoneNumber(event) {
    try {
      const phone = await app.client.bindPhone(event);
      this.setData({ phone });
    } catch (err) {
      this.showError(err);
    }
  },

  // The picture is a temporary file: upload it, and the profile keeps its URL.
  async onChooseAvatar(event) {
    this.setData({ error: '' });
    try {
      const me = await app.client.setAvatar(event);
      this.setData({ avatarUrl: me.profile.avatar_url });
    } catch (err) {
      this.showError(err);
    }
  },

  showError(err) {
    this.setData({ error: `${err.error || 'error'}: ${err.message}` });
  },
});
