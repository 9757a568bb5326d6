// Compiled (not run) by `npm test`: the declarations must describe real usage.
import { createClient, WxauthError, Document, WxauthFile } from '../index';

declare const event: WechatMiniprogram.ButtonGetPhoneNumber;
declare const avatarEvent: { detail: { avatarUrl: string } };

async function usage(): Promise<void> {
  const client = createClient({ baseURL: 'https://api.example.com', appid: 'wx1111111111111111' });
  const { user, new_user } = await client.login();
  const openid: string = user.openid;
  const isNew: boolean = new_user;
  const me = await client.me();
  const nickname = me.profile['nickname'];
  await client.updateProfile({ nickname: 'Alice' });
  const exported = await client.exportMyData();
  const howMany: number = exported.document_count;
  const notesExported = exported.documents['notes'] ?? [];
  const firstId: string | undefined = notesExported[0]?.id;
  await client.deleteAccount();
  const phone = await client.bindPhone(event);
  const cc: string = phone.country_code;
  const answers = await client.requestSubscribe(['TPL_ORDER_SHIPPED']);
  const shipped: string | undefined = answers['TPL_ORDER_SHIPPED'];
  void shipped;
  interface Note {
    name: string;
    age: string;
  }
  const notes = client.data<Note>('notes');
  const doc: Document<Note> = await notes.create({ name: '张三', age: '20' });
  const page = await notes.list({ limit: 10 });
  const next: string | null = page.next_cursor;
  await notes.update(doc.id, { name: '李四', age: '21' }, { version: doc.version });
  await notes.remove(doc.id);
  interface Todo {
    title: string;
    done: boolean;
    priority: number;
  }
  const _ = client.command;
  const todos = client.data<Todo>('todos');
  const open = await todos.where({ done: false, priority: _.gte(2) }).orderBy('priority', 'desc').limit(10).get();
  const firstTitle: string = open.data[0].data.title;
  const watcher = todos.where({ done: false }).orderBy('priority', 'desc').limit(50).watch({
    onChange(snapshot) {
      const shown: string[] = snapshot.docs.map((d) => d.data.title);
      for (const c of snapshot.docChanges) {
        const kind: 'init' | 'add' | 'update' | 'remove' = c.dataType;
        const changed = c.updatedFields?.['title'];
      }
      const first: boolean = snapshot.type === 'init';
    },
    onError(err) {
      const code: string = err.error;
    },
  });
  watcher.close();
  const more = await todos.where({ done: false }).startAfter(open.nextCursor).get();
  const total: number = (await todos.where(_.or([{ done: true }, { priority: _.lt(1).or(_.gt(5)) }])).count()).total;
  const one = await todos.doc(doc.id).get();
  const version: number = one.data.version;
  await todos.doc(doc.id).set({ title: 't', done: true, priority: 1 }, { version });
  await todos.where({ 'meta.tag': _.in(['a', 'b']), created_at: _.gt(new Date()), gone: _.exists(false) }).get();
  const firstPage = await todos.get();
  const owner: string | undefined = firstPage.data[0].owner;
  const photo: WxauthFile = await client.uploadFile('http://tmp/a.jpg', { purpose: 'image', public: false });
  const src: string = photo.url;
  const withAvatar = await client.setAvatar(avatarEvent);
  const avatarURL = withAvatar.profile['avatar_url'];
  const filePage = await client.files().list({ limit: 20 });
  const nextFiles: string | null = filePage.nextCursor;
  const fresh = await client.files().get(filePage.items[0].id);
  await client.files().delete(fresh.id);
  const exportedFiles: WxauthFile[] = exported.files;
  void [src, avatarURL, nextFiles, exportedFiles];
  const steps = await client.decrypt<{ stepInfoList: { step: number }[] }>({ encryptedData: 'x', iv: 'y' });
  const n: number = steps.stepInfoList.length;
  try {
    await client.request({ url: '/v1/me', method: 'GET' });
  } catch (e) {
    if (e instanceof WxauthError) {
      const code: string = e.error;
      const status: number = e.statusCode;
      void [code, status];
    }
  }
  void [openid, isNew, nickname, cc, next, n];
}
void usage;
