// ucity's public APIs as the browser uses them: JSON GET/POST, NGSI-LD paging, tenant and actor.
const pageParams = new URLSearchParams(location.search);
export const tenant = pageParams.get('tenant') || '';
const NGSI = '/ngsi-ld/v1';
const PAGE = 1000;

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export function actor() {
  return (localStorage.getItem('ucity.actor') || '').trim() || 'operator';
}

// The operations API (events, cameras, agencies, grants, audit) takes a bearer token with a role;
// the operator enters it once per browser session (never stored beyond it).
export function token() { return sessionStorage.getItem('ucity.token') || ''; }
export function setToken(value) {
  if (value) sessionStorage.setItem('ucity.token', value.trim()); else sessionStorage.removeItem('ucity.token');
}

function headers(extra = {}) {
  const out = { Accept: 'application/json', ...extra };
  if (tenant) out['NGSILD-Tenant'] = tenant;
  if (token()) out.Authorization = `Bearer ${token()}`;
  return out;
}

async function parse(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, (body && (body.detail || body.title)) || response.statusText);
  return body;
}

// A route the server does not have answers 404 "no resource at <path>" (server.py).
export function missingRoute(error) {
  return error instanceof ApiError && error.status === 404 && error.message.startsWith('no resource at');
}

export async function getJSON(path, accept) {
  return parse(await fetch(path, { headers: headers(accept ? { Accept: accept } : {}) }));
}

export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: 'POST', body: JSON.stringify(body ?? {}),
    // A header carries only ISO-8859-1: a Korean operator's name goes percent-encoded (UTF-8), which the
    // server decodes (ucity.core.params.header_text).
    headers: headers({ 'Content-Type': 'application/json', 'X-Ucity-Actor': encodeURIComponent(actor()) }),
  });
  return parse(response);
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

export async function entity(id, attrs) {
  const query = new URLSearchParams({ options: 'keyValues' });
  if (attrs) query.set('attrs', attrs.join(','));
  return getJSON(`${NGSI}/entities/${encodeURIComponent(id)}?${query}`);
}

export async function temporal(id, attrs, lastN = 300) {
  const query = new URLSearchParams({ attrs: attrs.join(','), options: 'temporalValues', lastN });
  return getJSON(`${NGSI}/temporal/entities/${encodeURIComponent(id)}?${query}`);
}

export function streamUrl() {
  return tenant ? `/api/v1/stream?tenant=${encodeURIComponent(tenant)}` : '/api/v1/stream';
}
