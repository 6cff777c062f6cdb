// The operation-center part of a situation (ucity/ops, issue 5): its event, the nearest cameras
// with their distance, "share with agency" (a footage grant), and the event's audit trail.
// The operations API takes a bearer token; without one the section points to the top bar's sign-in.
import { ApiError, errorText, getJSON, missingRoute, postJSON, token } from './api.js';
import { promptSignIn } from './auth.js';
import { pick, t, tOr } from './i18n.js';
import { kst } from './time.js';
import { h, toast } from './ui.js';

const OPEN_EVENTS = 'received,acknowledged,sharing,dispatched';
let available = null; // null: not asked yet; false: this server has no operations API
let refused = { token: null, error: null }; // a 403 for the current token: its role has no operations access

async function probe() {
  if (available === false) return false;
  if (available !== null && refused.token === token()) return available;
  refused = { token: token(), error: null };
  try {
    await getJSON('/api/v1/events?limit=1', null, { quiet: true }); // 401 without a token: the route exists
    available = true;
  } catch (error) {
    available = !missingRoute(error);
    if (error instanceof ApiError && error.status === 403) refused.error = error;
  }
  return available;
}

// Open events, for matching situations to events and for events without an alarm (e.g. a 112 report).
export async function openEvents() {
  if (!(await probe()) || !token() || refused.error) return [];
  try {
    return (await getJSON(`/api/v1/events?status=${OPEN_EVENTS}&limit=1000`)).events;
  } catch { return []; }
}

// No token (or a refused one): the operations part says so and opens the top bar's sign-in.
function signInNotice(message) {
  return h('div', { class: 'notice', 'data-role': 'sign-in-needed' },
    h('p', {}, message || t('ops.signInNeeded')),
    h('button', { type: 'button', 'data-action': 'sign-in', onclick: () => promptSignIn('', true) }, t('auth.signIn')));
}

// The event of a situation: one made from any of its alarms (PLAT-R9).
async function eventOf(situation) {
  if (situation.event) return situation.event;
  const ids = new Set(situation.alarms.map((a) => a.id));
  const derived = await getJSON(`/api/v1/alarms?entity=${encodeURIComponent(situation.key)}&derived=true&limit=20`).catch(() => ({ alarms: [] }));
  for (const a of derived.alarms) ids.add(a.id);
  return (await openEvents()).find((e) => e.alarm && ids.has(e.alarm)) || null;
}

export async function opsSection(situation, panel) {
  const section = h('section', { class: 'ops', 'data-role': 'ops' });
  const rerender = () => panel.refresh();
  if (!(await probe())) {
    section.append(h('h3', {}, t('event.cameras')), h('p', { class: 'notice' }, t('event.opsMissing')));
    return section;
  }
  if (!token()) {
    section.append(h('h3', {}, t('event.operations')), signInNotice());
    promptSignIn('', false);
    return section;
  }
  if (refused.error) { // signed in, with a role that has no operations endpoint (e.g. a reader)
    section.append(h('h3', {}, t('event.operations')), h('p', { class: 'error', 'data-role': 'ops-error' }, errorText(refused.error)));
    return section;
  }
  try {
    const event = await eventOf(situation);
    section.append(...await eventBlock(event, situation, rerender));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      section.append(h('h3', {}, t('event.operations')), signInNotice(t('auth.required')));
    } else {
      section.append(h('h3', {}, t('event.operations')), h('p', { class: 'error', 'data-role': 'ops-error' }, errorText(error)));
    }
  }
  return section;
}

async function eventBlock(event, situation, rerender) {
  const out = [];
  if (event) {
    out.push(h('h3', {}, t('event.operations')), h('p', { 'data-role': 'event', dataset: { eventId: event.id } },
      h('span', { class: `lvl lvl-${event.level}` }, t(`level.${event.level}`)), ' ',
      `${pick(event.serviceName)} · ${pick(event.typeName) || event.typeCode} · ${pick(event.statusName) || event.status} · ${kst(event.reportedAt)}`));
  }
  const selection = event
    ? await getJSON(`/api/v1/events/${encodeURIComponent(event.id)}/cameras`)
    : await nearPoint(situation);
  out.push(h('h3', {}, t('event.cameras')), camerasTable(selection));
  if (event) {
    out.push(h('h3', {}, t('event.sharing')), await shareForm(event, selection, rerender));
    out.push(h('h3', {}, t('event.audit')), await auditTable(event));
  } else {
    out.push(h('p', { class: 'notice' }, t('event.noEvent')));
  }
  return out;
}

async function nearPoint(situation) {
  const point = situation.location && situation.location.coordinates;
  if (!point || situation.location.type !== 'Point') return { cameras: [] };
  return getJSON(`/api/v1/cameras?near=${point[0]},${point[1]}`);
}

function camerasTable(selection) {
  const cameras = selection.cameras || [];
  if (!cameras.length) return h('p', { class: 'notice' }, t('event.noCameras'));
  return h('table', { class: 'history cam-list', 'data-role': 'cameras' },
    h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'CCTV'), h('th', {}, t('field.distance')), h('th', {}, t('ops.covers')))),
    h('tbody', {}, cameras.map((c, i) => h('tr', { dataset: { camera: c.id, distance: c.distanceM } },
      h('td', {}, String(i + 1)), h('td', {}, c.name || c.id), h('td', {}, `${Math.round(c.distanceM)} ${t('unit.m')}`),
      h('td', {}, c.covers === true ? '✓' : c.covers === false ? '–' : '?')))));
}

async function shareForm(event, selection, rerender) {
  const agencies = await getJSON('/api/v1/agencies').catch(() => []);
  const cameras = selection.cameras || [];
  if (!agencies.length || !cameras.length) return h('p', { class: 'notice' }, t(agencies.length ? 'event.noCameras' : 'ops.noAgencies'));
  return h('form', { class: 'share', 'data-role': 'share', onsubmit: async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const chosen = form.getAll('camera');
    try {
      const grant = await postJSON('/api/v1/grants', { agency: form.get('agency'), event: event.id, cameras: chosen,
        minutes: Number(form.get('minutes')) || undefined, purpose: form.get('purpose') || '' });
      const agency = agencies.find((a) => a.id === grant.agency);
      toast(t('event.shared', { agency: pick(agency?.name) || grant.agency }));
      rerender();
    } catch (error) {
      toast(errorText(error));
    }
  } },
  h('div', { class: 'form-row' },
    h('label', {}, t('field.agency'), h('select', { name: 'agency', required: true },
      agencies.map((a) => h('option', { value: a.id }, pick(a.name) || a.id)))),
    h('label', {}, t('ops.minutes'), h('input', { name: 'minutes', type: 'number', min: 1, max: 240, value: 30 })),
    h('label', {}, t('field.purpose'), h('input', { name: 'purpose', maxlength: 500 }))),
  h('fieldset', { class: 'form-row' }, h('legend', {}, 'CCTV'), cameras.map((c, i) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'camera', value: c.id, checked: i < 3 }), `${c.name || c.id} (${Math.round(c.distanceM)} ${t('unit.m')})`))),
  h('button', { type: 'submit', class: 'primary', 'data-action': 'share' }, t('action.share')));
}

// The event's audit trail (GET /api/v1/events/{id}: every line of the audit log about it, with its actor),
// newest first: status changes, linkages, grants issued and every footage access.
async function auditTable(event) {
  const detail = await getJSON(`/api/v1/events/${encodeURIComponent(event.id)}`);
  const rows = [...(detail.history || [])].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0)).reverse();
  if (!rows.length) return h('p', { class: 'notice' }, t('health.none'));
  return h('table', { class: 'history', 'data-role': 'audit' }, h('tbody', {}, rows.map((r) => h('tr', { dataset: { kind: r.kind, action: r.action } },
    h('td', {}, kst(r.at)), h('td', {}, tOr(`audit.${r.kind}.${r.action}`, `${r.kind} · ${r.action}`)), h('td', {}, r.actor || ''),
    h('td', {}, auditDetail(r))))));
}

// What a line adds to its action: a status change's from → to, a level, the agency, grant, camera, outcome, note.
function auditDetail(r) {
  const status = (code) => tOr(`estatus.${code}`, code);
  const parts = [];
  if (r.from || r.to) parts.push(`${status(r.from || '')} → ${status(r.to || '')}`);
  if (r.level) parts.push(tOr(`level.${r.level}`, r.level));
  parts.push(...[r.agency, r.grant, r.camera, r.status, r.outcome !== 'ok' ? r.outcome : null, r.reason, r.note]);
  return parts.filter(Boolean).join(' · ');
}
