/// <reference types="miniprogram-api-typings" />
// Types for the wxauth mini-program client (index.js).

/** The user as login and refresh return it. */
export interface WxauthUser {
  id: string;
  appid: string;
  openid: string;
  unionid: string | null;
  /** RFC 3339 */
  created_at: string;
}

/** A bound phone number. */
export interface PhoneNumber {
  phone_number: string;
  pure_phone_number: string;
  country_code: string;
}

/** GET /v1/me */
export interface Me extends WxauthUser {
  /** RFC 3339 */
  last_login_at: string;
  profile: Record<string, unknown>;
  phone: PhoneNumber | null;
}

/** A stored document. */
export interface Document<T = Record<string, unknown>> {
  id: string;
  version: number;
  /** RFC 3339 */
  created_at: string;
  /** RFC 3339 */
  updated_at: string;
  data: T;
  /** The owner's user id; only in shared collections (public_read, admin_write). */
  owner?: string;
}

/** A page of documents, newest first. */
export interface DocumentPage<T = Record<string, unknown>> {
  items: Document<T>[];
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: string | null;
}

export interface LoginResult {
  user: WxauthUser;
  new_user: boolean;
}

export interface ClientOptions {
  /** wxauth's URL, e.g. https://api.example.com */
  baseURL: string;
  /** The mini program's appid, when the server serves several. */
  appid?: string;
  /** Storage key for the tokens (default 'wxauth'). */
  storageKey?: string;
  /** Retries after 429/503 or a network error (default 2). */
  maxRetries?: number;
  /** Longest wait honoured from Retry-After, ms (default 10000). */
  maxRetryAfterMs?: number;
  /** The wx API; defaults to the global `wx` of the mini program. */
  wx?: Pick<WechatMiniprogram.Wx, 'login' | 'request' | 'uploadFile' | 'getStorageSync' | 'setStorageSync' | 'removeStorageSync'>;
}

export interface RequestOptions {
  /** A path on baseURL (e.g. '/v1/me') or an absolute URL. */
  url: string;
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS';
  data?: unknown;
  header?: Record<string, string>;
}

export interface Response<T = unknown> {
  statusCode: number;
  data: T;
  header: Record<string, string>;
}

/** The encrypted payload wx.getUserInfo, wx.getWeRunData and the old phone button give. */
export interface EncryptedPayload {
  encryptedData: string;
  iv: string;
  rawData?: string;
  signature?: string;
}

/** A literal a condition compares with (a Date becomes its RFC 3339 text). */
export type Scalar = string | number | boolean | null | Date;

/** An operator on one field, e.g. `_.gte(2)`; `.and()` / `.or()` combine them. */
export interface FieldCommand {
  readonly op: string;
  and(...others: FieldCommand[]): FieldCommand;
  or(...others: FieldCommand[]): FieldCommand;
}

/** `_.and([...])` / `_.or([...])` of whole where objects. */
export interface LogicCommand {
  readonly op: 'and' | 'or';
}

/** Fields (dotted paths or nested objects) to a literal or an operator. */
export interface WhereObject {
  [field: string]: Scalar | FieldCommand | WhereObject;
}

export type Where = WhereObject | LogicCommand;

/** Query operators, like CloudBase's `db.command`: `const _ = client.command`. */
export interface Command {
  eq(value: Scalar): FieldCommand;
  neq(value: Scalar): FieldCommand;
  gt(value: number | string | Date): FieldCommand;
  gte(value: number | string | Date): FieldCommand;
  lt(value: number | string | Date): FieldCommand;
  lte(value: number | string | Date): FieldCommand;
  /** At most 100 values. */
  in(values: Scalar[]): FieldCommand;
  nin(values: Scalar[]): FieldCommand;
  exists(present: boolean): FieldCommand;
  and(conditions: Where[]): LogicCommand;
  and(...conditions: FieldCommand[]): FieldCommand;
  or(conditions: Where[]): LogicCommand;
  or(...conditions: FieldCommand[]): FieldCommand;
}

/** One page of a query. */
export interface QueryResult<T = Record<string, unknown>> {
  data: Document<T>[];
  /** Pass to startAfter() for the next page; null on the last page. */
  nextCursor: string | null;
}

/** One change in a watch snapshot (CloudBase's docChanges). */
export interface DocChange<T = Record<string, unknown>> {
  /** The snapshot's id. */
  id: number;
  /** `init` in the first snapshot; then what happened to the document. */
  dataType: 'init' | 'add' | 'update' | 'remove';
  /** How the document moved in the list: `enqueue` came in, `dequeue` left. */
  queueType: 'init' | 'enqueue' | 'dequeue' | 'update';
  docId: string;
  /** The document (for a remove: as it was last shown). */
  doc: Document<T>;
  /** For an update: the top-level fields set, with their new values. */
  updatedFields?: Record<string, unknown>;
  /** For an update: the top-level fields removed. */
  removedFields?: string[];
}

/** What a watch's onChange receives. */
export interface Snapshot<T = Record<string, unknown>> {
  /** Counts up from 1 per watch. */
  id: number;
  /** `init` for the first snapshot (and after a restart the server could not resume). */
  type?: 'init';
  /** Every document the query shows now, in its order. */
  docs: Document<T>[];
  docChanges: DocChange<T>[];
}

export interface WatchOptions<T = Record<string, unknown>> {
  onChange(snapshot: Snapshot<T>): void;
  /** A watch the server refused (a bad query: it is over), or a login that failed (it retries). */
  onError?(error: WxauthError): void;
}

/** A live query; close() ends it. */
export interface Watcher {
  close(): void;
}

/** A query; every method returns a new one. */
export interface Query<T = Record<string, unknown>> {
  /** At most 20 conditions, nesting depth 4 (else a 400 naming the limit). */
  where(where: Where): Query<T>;
  /** Adds a sort key; ties go by creation time, then id. */
  orderBy(field: string, order?: 'asc' | 'desc'): Query<T>;
  limit(n: number): Query<T>;
  startAfter(cursor: string | null): Query<T>;
  get(): Promise<QueryResult<T>>;
  count(): Promise<{ total: number }>;
  /**
   * Watches the query over one WebSocket (GET /v1/watch): the first
   * snapshot holds every matching document (`limit`, default 100), each
   * later one what changed. Reconnects, refreshes the token and resumes by
   * itself, also after the app was in the background.
   */
  watch(options: WatchOptions<T>): Watcher;
}

/** One document, CloudBase style. */
export interface DocumentRef<T = Record<string, unknown>> {
  get(): Promise<{ data: Document<T> }>;
  /** Replaces the data; with `version` (or `ifMatch`), only if still at that version. */
  set(doc: T, options?: { version?: number; ifMatch?: string }): Promise<Document<T>>;
  remove(): Promise<void>;
}

export interface Collection<T = Record<string, unknown>> extends Query<T> {
  /** Stores a document; retries are safe (one Idempotency-Key per call). */
  create(doc: T, options?: { idempotencyKey?: string }): Promise<Document<T>>;
  /** The same as create (CloudBase's name). */
  add(doc: T, options?: { idempotencyKey?: string }): Promise<Document<T>>;
  list(options?: { limit?: number; cursor?: string }): Promise<DocumentPage<T>>;
  /** The first page, newest first (like a query without conditions). */
  get(): Promise<QueryResult<T>>;
  get(id: string): Promise<Document<T>>;
  doc(id: string): DocumentRef<T>;
  /** With `version` (or `ifMatch`), only if the document is still at that version (else 412). */
  update(id: string, doc: T, options?: { version?: number; ifMatch?: string }): Promise<Document<T>>;
  remove(id: string): Promise<void>;
}

/** A stored file (POST /v1/files, GET /v1/files/{id}). */
export interface WxauthFile {
  id: string;
  /** Where <image src> or wx.downloadFile fetch it with no header: stable
   * for a public file, signed and expiring (files.url_ttl_secs) for a private one. */
  url: string;
  size: number;
  /** Decided from the bytes: image/jpeg, image/png, image/gif, image/webp or application/octet-stream. */
  content_type: string;
  sha256: string;
  purpose: FilePurpose;
  public: boolean;
  status: 'ready';
  /** The temporary file's name (a display name, never a path). */
  filename: string;
  /** RFC 3339 */
  created_at: string;
}

/** avatar and image: JPEG, PNG, GIF or WebP only (else 415); attachment: anything, served as a download. */
export type FilePurpose = 'avatar' | 'image' | 'attachment';

export interface UploadOptions {
  /** Default 'attachment'. */
  purpose?: FilePurpose;
  /** Default: true for avatars, false otherwise. */
  public?: boolean;
  /** The multipart field name (default 'file'). */
  name?: string;
}

/** The user's own files. */
export interface Files {
  /** A page, newest first. */
  list(options?: { limit?: number; cursor?: string }): Promise<{ items: WxauthFile[]; nextCursor: string | null }>;
  /** One file's metadata, with a fresh URL. */
  get(id: string): Promise<WxauthFile>;
  /** Deletes the file: its URLs answer 404 from then on. */
  delete(id: string): Promise<void>;
}

/** A session as an export shows it (never a token). */
export interface ExportedSession {
  id: string;
  appid: string;
  created_at: string;
  last_refresh_at: string;
  revoked_at: string | null;
  revoked_reason: string | null;
  active: boolean;
}

/** GET /v1/me/export: the user's data, as one file. */
export interface UserExport {
  format: 'wxauth-export/1';
  exported_at: string;
  user: Me;
  sessions: ExportedSession[];
  /** Documents by collection, oldest first. */
  documents: Record<string, Array<{ id: string; version: number; created_at: string; updated_at: string; data: Record<string, unknown> }>>;
  document_count: number;
  /** The user's files, newest first, with URLs to fetch their bytes. */
  files: WxauthFile[];
}

export interface WxauthClient {
  /** wx.login, then POST /v1/login; concurrent calls share one login. */
  login(): Promise<LoginResult>;
  /** Like wx.request with the session attached; rejects with WxauthError unless 2xx. */
  request<T = unknown>(options: RequestOptions): Promise<Response<T>>;
  /** Ends the session on the server and forgets the tokens. */
  logout(): Promise<void>;
  isLoggedIn(): boolean;
  currentUser(): WxauthUser | null;
  me(): Promise<Me>;
  /** Everything the server holds about the user (GET /v1/me/export). */
  exportMyData(): Promise<UserExport>;
  /** Deletes the account and all its data on the server, then forgets the tokens. Irreversible. */
  deleteAccount(): Promise<void>;
  updateProfile(profile: Record<string, unknown>): Promise<Me>;
  /** Takes the event of <button open-type="getPhoneNumber" bindgetphonenumber="…">. */
  bindPhone(event: WechatMiniprogram.ButtonGetPhoneNumber | { detail: { code?: string; errMsg?: string } }): Promise<PhoneNumber>;
  /**
   * Asks the user to accept subscribe messages of 1 to 3 templates
   * (wx.requestSubscribeMessage; call it from a tap) and reports the
   * answers to wxauth. Resolves with WeChat's answer per template.
   */
  requestSubscribe(templateIds: string | string[]): Promise<SubscribeResult>;
  /** Uploads a temporary file (wx.chooseMedia, chooseAvatar, wx.chooseMessageFile) through
   * wx.uploadFile with the session; 401: one refresh and one retry. */
  uploadFile(tempFilePath: string, options?: UploadOptions): Promise<WxauthFile>;
  /** Takes the event of <button open-type="chooseAvatar" bindchooseavatar="…"> (or its avatarUrl):
   * uploads it as the public avatar and sets profile.avatar_url; resolves with the user. */
  setAvatar(event: string | { detail: { avatarUrl: string } }): Promise<Me>;
  /** The user's own files: list, get, delete. */
  files(): Files;
  /** Decrypts an encrypted payload on the server (watermark and signature checked). */
  decrypt<T = Record<string, unknown>>(payload: EncryptedPayload): Promise<T>;
  /** The documents of one collection ([a-z0-9_-]{1,64}) the caller reads: their own; in a shared collection, the app's. */
  data<T = Record<string, unknown>>(collection: string): Collection<T>;
  /** Query operators: `const _ = client.command`. */
  command: Command;
}

/** An error from wxauth, or a network failure ('network_error'). */
export class WxauthError extends Error {
  /** The server's error code, e.g. 'invalid_code', 'precondition_failed'. */
  error: string;
  /** HTTP status; 0 for a network failure. */
  statusCode: number;
  /** The request id to quote in a bug report. */
  requestId: string;
  /** 'content_rejected': the field WeChat's content check refused. */
  field?: string;
  /** 'content_rejected': WeChat's label for it (e.g. 20002). */
  label?: number;
}

export function createClient(options: ClientOptions): WxauthClient;
/** The query operators (also `client.command`). */
export const command: Command;

/** What wx.requestSubscribeMessage answered: errMsg, and each template's answer. */
export type SubscribeResult = { errMsg: string } & Record<string, 'accept' | 'reject' | 'ban' | 'filter' | string>;
