// ucity's public APIs as the browser uses them: JSON GET/POST, NGSI-LD paging, tenant, actor and token.
import { currentLang, t } from './i18n.js';

const pageParams = new URLSearchParams(location.search);
export const tenant = pageParams.get('tenant') || '';
const NGSI = '/ngsi-ld/v1';
const PAGE = 1000;

export class ApiError extends Error {
  constructor(status, detail, problem = null) {
    super(detail);
    this.status = status;
    this.problem = problem; // the ProblemDetails body (a 403 names the missing `permission`)
  }
}

// The operator's display name typed in the top bar (X-Ucity-Actor): kept in localStorage for the next shift of the same
// person, but bound to the principal it was typed under (`ucity.actor.owner`): signing out, a revoked token and a
// sign-in as someone else forget it, so one operator's name never goes on the next one's audit lines (QA16 F4).
// Empty means none: with a token the server names the principal alone; never a made-up "operator".
const ACTOR = 'ucity.actor';
const ACTOR_OWNER = 'ucity.actor.owner';
export function actor() {
  return (localStorage.getItem(ACTOR) || '').trim();
}
export function setActor(name, owner = '') {
  const value = String(name || '').trim();
  if (value) localStorage.setItem(ACTOR, value); else localStorage.removeItem(ACTOR);
  if (value && owner) localStorage.setItem(ACTOR_OWNER, owner); else localStorage.removeItem(ACTOR_OWNER);
  const input = document.getElementById('actor');
  if (input && input.value.trim() !== value) input.value = value;
}
// A principal signed in: a name typed under another principal is not theirs (forgotten); one typed while no one was
// signed in (just before this sign-in) becomes theirs.
export function claimActor(owner) {
  const typedBy = localStorage.getItem(ACTOR_OWNER) || '';
  if (!actor()) return;
  if (typedBy && typedBy !== owner) setActor(''); else setActor(actor(), owner);
}

// No token and no operator name (sign-in off): the server needs a name to audit, so the page asks for it.
export class ActorMissing extends Error {}

// The bearer token (the operations API always takes one; with `server.require_auth` every API does).
// The operator signs in once per browser session in the top bar (auth.js): sessionStorage only, never a
// URL, never localStorage.
export function token() { return sessionStorage.getItem('ucity.token') || ''; }
export function setToken(value) {
  if (value && value.trim()) sessionStorage.setItem('ucity.token', value.trim()); else sessionStorage.removeItem('ucity.token');
}

// 401 from any API: the listeners (the top bar's sign-in, auth.js) are told the server's detail and the
// token the request carried (`sent`, '' for none); they decide what it means: no token yet, a token being
// checked, a stale answer for a token no longer in use, or the signed-in token refused (revoked).
const unauthorizedListeners = [];
export function onUnauthorized(fn) { unauthorizedListeners.push(fn); }
export function unauthorized(sent, detail) {
  for (const fn of unauthorizedListeners) fn(detail, sent || '');
}

export function authHeaders(extra = {}) {
  const out = { Accept: 'application/json', ...extra };
  if (tenant) out['NGSILD-Tenant'] = tenant;
  if (token()) out.Authorization = `Bearer ${token()}`;
  return out;
}
const headers = authHeaders;

// `quiet`: a 401 is the caller's business (a probe, the sign-in check), not a reason to ask for sign-in.
async function parse(response, sent, quiet = false) {
  if (response.status === 204) return null;
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const detail = (body && (body.detail || body.title)) || response.statusText;
    if (response.status === 401 && !quiet) unauthorized(sent, detail);
    throw new ApiError(response.status, detail, body);
  }
  return body;
}

// What to tell the operator about a failed call: a 403 says what the role may not do (the problem's
// detail and the missing permission), anything else the server's detail.
// The server's texts are "한국어 / English": a one-language screen shows the part of its language (QA7). A text of
// any other shape (no " / ", or more than one) is shown whole.
export function localText(text, lang = currentLang()) {
  const parts = String(text ?? '').split(' / ');
  if (parts.length !== 2) return String(text ?? '');
  return lang === 'en' ? parts[1] : parts[0];
}

export function errorText(error) {
  if (error instanceof ApiError && error.status === 403) {
    const permission = error.problem?.permission;
    const detail = localText(error.message);
    return t('auth.forbidden', { detail: permission && !detail.includes(permission) ? `${detail} (${permission})` : detail });
  }
  if (error instanceof ApiError && error.status === 401) return t('auth.required');
  if (error instanceof ApiError) return t('error.action', { detail: localText(error.message) });
  if (error instanceof ActorMissing) return t('actor.required');
  return t('error.network');
}

// A route the server does not have answers 404 "<경로> … / no resource at <path>" (server.py `no_route`).
export function missingRoute(error) {
  return error instanceof ApiError && error.status === 404 && error.message.includes('no resource at');
}

export async function getJSON(path, accept, { quiet = false } = {}) {
  const sent = token();
  return parse(await fetch(path, { headers: headers(accept ? { Accept: accept } : {}) }), sent, quiet);
}

export async function postJSON(path, body) {
  const sent = token();
  const name = actor();
  if (!sent && !name) {
    document.getElementById('actor')?.focus();
    throw new ActorMissing(t('actor.required'));
  }
  // A header carries only ISO-8859-1: a Korean operator's name goes percent-encoded (UTF-8), which the
  // server decodes (ucity.core.params.header_text). No name: no header (the token's principal acts).
  const extra = { 'Content-Type': 'application/json' };
  if (name) extra['X-Ucity-Actor'] = encodeURIComponent(name);
  const response = await fetch(path, { method: 'POST', body: JSON.stringify(body ?? {}), headers: headers(extra) });
  return parse(response, sent);
}

// Does a route exist? (404 "no resource at" for a path no route serves; any other answer means it does.)
export async function exists(path) {
  try {
    const response = await fetch(path, { headers: headers() });
    return response.status !== 404 || !(await response.text()).includes('no resource at');
  } catch { return false; }
}

// Every entity of a type in keyValues form, page by page.
export async function allEntities(type, attrs, extra = {}) {
  const out = [];
  for (let offset = 0; ; offset += PAGE) {
    const query = new URLSearchParams({ type, options: 'keyValues', limit: PAGE, offset, ...extra });
    if (attrs) query.set('attrs', attrs.join(','));
    const page = await getJSON(`${NGSI}/entities?${query}`);
    out.push(...page);
    if (page.length < PAGE) return out;
  }
}

// Every item of a ucity list API (`{total, limit, offset, <key>: [...]}`, at most 1,000 a page), page by page: the
// open alarms of a storm, the open events. Newest first there; an item added meanwhile shifts the pages by one,
// so one may come twice (callers keep items by id) and the live stream brings the new one.
const MAX_PAGES = 100;
export async function allListed(path, key) {
  const out = [];
  const sep = path.includes('?') ? '&' : '?';
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const got = await getJSON(`${path}${sep}limit=${PAGE}&offset=${page * PAGE}`);
    out.push(...got[key]);
    if (got[key].length < PAGE || out.length >= got.total) break;
  }
  return out;
}

export async function entity(id, attrs) {
  const query = new URLSearchParams({ options: 'keyValues' });
  if (attrs) query.set('attrs', attrs.join(','));
  return getJSON(`${NGSI}/entities/${encodeURIComponent(id)}?${query}`);
}

// The normalized form: every instance with its own `unitCode` and `datasetId` (the simplified form drops both).
export async function temporalInstances(id, attrs, lastN = 300) {
  const query = new URLSearchParams({ attrs: attrs.join(','), lastN });
  return getJSON(`${NGSI}/temporal/entities/${encodeURIComponent(id)}?${query}`);
}

export async function temporal(id, attrs, lastN = 300) {
  const query = new URLSearchParams({ attrs: attrs.join(','), options: 'temporalValues', lastN });
  return getJSON(`${NGSI}/temporal/entities/${encodeURIComponent(id)}?${query}`);
}
