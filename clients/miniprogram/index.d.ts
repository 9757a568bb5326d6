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
  wx?: Pick<WechatMiniprogram.Wx, 'login' | 'request' | 'getStorageSync' | 'setStorageSync' | 'removeStorageSync'>;
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

export interface Collection<T = Record<string, unknown>> {
  /** Stores a document; retries are safe (one Idempotency-Key per call). */
  create(doc: T, options?: { idempotencyKey?: string }): Promise<Document<T>>;
  list(options?: { limit?: number; cursor?: string }): Promise<DocumentPage<T>>;
  get(id: string): Promise<Document<T>>;
  /** With `version` (or `ifMatch`), only if the document is still at that version (else 412). */
  update(id: string, doc: T, options?: { version?: number; ifMatch?: string }): Promise<Document<T>>;
  remove(id: string): Promise<void>;
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
  updateProfile(profile: Record<string, unknown>): Promise<Me>;
  /** Takes the event of <button open-type="getPhoneNumber" bindgetphonenumber="…">. */
  bindPhone(event: WechatMiniprogram.ButtonGetPhoneNumber | { detail: { code?: string; errMsg?: string } }): Promise<PhoneNumber>;
  /** Decrypts an encrypted payload on the server (watermark and signature checked). */
  decrypt<T = Record<string, unknown>>(payload: EncryptedPayload): Promise<T>;
  /** The caller's documents in one collection ([a-z0-9_-]{1,64}). */
  data<T = Record<string, unknown>>(collection: string): Collection<T>;
}

/** An error from wxauth, or a network failure ('network_error'). */
export class WxauthError extends Error {
  /** The server's error code, e.g. 'invalid_code', 'precondition_failed'. */
  error: string;
  /** HTTP status; 0 for a network failure. */
  statusCode: number;
  /** The request id to quote in a bug report. */
  requestId: string;
}

export function createClient(options: ClientOptions): WxauthClient;
