// The operation-center part of a situation (ucity/ops, issue 5): its event, the nearest cameras
// with their distance, "share with agency" (a footage grant), and the event's audit trail.
// The operations API takes a bearer token; without one the section points to the top bar's sign-in.
import { allListed, ApiError, errorText, getJSON, missingRoute, postJSON, token } from './api.js';
import { can, promptSignIn } from './auth.js';
import { pick, t, tOr } from './i18n.js';
import { maskPersonalIds } from './privacy.js';
import * as store from './store.js';
import { kst } from './time.js';
import { h, kv, toast } from './ui.js';

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
  let events;
  try {
    events = await allListed(`/api/v1/events?status=${OPEN_EVENTS}`, 'events');
  } catch { return []; }
  await learnTypeNames(events);
  return events;
}

// Tell the operator of what arrived since the last read of the open events: a report that no alarm made (a 112
// or 119 report, an agency's event: alarms have their own cue) and a request the 112 gate holds for approval.
// The first read only learns what is there. Returns the messages shown (for tests).
let known = null;
export function announceArrivals(events) {
  const now = { events: new Set(), held: new Set() };
  const messages = [];
  for (const e of events) {
    const what = eventLabel(e);
    now.events.add(e.id);
    if (known && !e.alarm && !known.events.has(e.id)) messages.push(t('ops.newReport', { what }));
    for (const l of e.linkages || []) {
      if (l.status !== 'held') continue;
      now.held.add(l.id);
      if (known && !known.held.has(l.id)) messages.push(t('ops.heldRequest', { what: `${l.agency} · ${what}` }));
    }
  }
  known = now;
  for (const text of messages) alertToast(text);
  return messages;
}

function alertToast(text) {
  const el = h('div', { class: 'toast toast-alert', role: 'alert', 'data-role': 'ops-arrival' }, text);
  document.body.append(el);
  setTimeout(() => el.remove(), 15000);
}

// No token (or a refused one): the operations part says so and opens the top bar's sign-in.
function signInNotice(message) {
  return h('div', { class: 'notice', 'data-role': 'sign-in-needed' },
    h('p', {}, message || t('ops.signInNeeded')),
    h('button', { type: 'button', 'data-action': 'sign-in', onclick: () => promptSignIn('', true) }, t('auth.signIn')));
}

// The event of a situation: one made from any of its alarms (PLAT-R9). An event that has ended (cancelled here, or
// by the close of its alarm) is no longer among the open ones: the one this situation had (`seen`), else a recent
// cancelled or closed one of its alarms, so the panel says it was cancelled, not "not an event yet" (QA16 F6).
const seen = new Map(); // situation key -> the id of its event last shown
async function eventOf(situation) {
  if (situation.event) return situation.event;
  const ids = new Set(situation.alarms.map((a) => a.id));
  const derived = await getJSON(`/api/v1/alarms?entity=${encodeURIComponent(situation.key)}&derived=true&limit=20`).catch(() => ({ alarms: [] }));
  for (const a of derived.alarms) ids.add(a.id);
  const open = (await openEvents()).find((e) => e.alarm && ids.has(e.alarm));
  if (open) return open;
  if (seen.has(situation.key)) return { id: seen.get(situation.key) };
  if (!ids.size) return null;
  const ended = await getJSON('/api/v1/events?status=cancelled,closed&limit=200').catch(() => ({ events: [] }));
  return (ended.events || []).find((e) => e.alarm && ids.has(e.alarm)) || null;
}

// What the event is called on screen: its service and type in the current language (the API gives both names),
// never the bare type code (QA7).
// An event an alarm made has its rule's id as its type code ("qa_care_inactive"), which the events API names with the
// code itself: the rule's name instead, when it is known (`learnTypeNames`).
export function eventLabel(event) {
  const named = pick(event.typeName);
  const type = (!named || named === event.typeCode) && TYPE_NAMES.get(event.typeCode) ? pick(TYPE_NAMES.get(event.typeCode))
    : named || event.typeCode;
  return `${pick(event.serviceName) || event.service} · ${type}`;
}

// Rule-made event types: type code -> the rule's name ({ko, en}), learnt from the event's alarm (its
// `evidence.ruleName`, else `GET /api/v1/rules/{id}` for a role with config:read). A name not found is asked again
// at the next read.
const TYPE_NAMES = new Map();
const lookups = new Map(); // type code -> the look-up under way
export async function learnTypeNames(events) {
  const wanted = events.filter((e) => e.alarm && (!pick(e.typeName) || pick(e.typeName) === e.typeCode) && !TYPE_NAMES.has(e.typeCode));
  await Promise.all(wanted.map((e) => {
    if (!lookups.has(e.typeCode)) {
      lookups.set(e.typeCode, ruleNameOf(e.alarm).then((name) => {
        if (name) TYPE_NAMES.set(e.typeCode, name);
        lookups.delete(e.typeCode);
      }));
    }
    return lookups.get(e.typeCode);
  }));
}

async function ruleNameOf(alarmId) {
  const quiet = { quiet: true };
  const alarm = store.get(alarmId) || await getJSON(`/api/v1/alarms/${encodeURIComponent(alarmId)}`, null, quiet).catch(() => null);
  if (alarm?.evidence?.ruleName) return alarm.evidence.ruleName;
  if (!alarm?.rule_id) return null;
  return (await getJSON(`/api/v1/rules/${encodeURIComponent(alarm.rule_id)}`, null, quiet).catch(() => null))?.name || null;
}

// The event as it is now: a share or a status move since the list (or the map's icon) was read changes its
// status, linkages and trail, so the panel reads it again each time it is drawn (QA7: "received" after a share).
async function current(event) {
  return event ? getJSON(`/api/v1/events/${encodeURIComponent(event.id)}`) : null;
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
    const event = await current(await eventOf(situation));
    if (event) seen.set(situation.key, event.id);
    if (event) await learnTypeNames([event]);
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
      `${eventLabel(event)} · `, h('span', { 'data-role': 'event-status-name', dataset: { status: event.status } },
        pick(event.statusName) || event.status), ` · ${kst(event.reportedAt)}`));
    // A report's address and details (a 119 report: "디지털로 300", "3층 연기"), as the API gives them to this role
    // (details masked for a role without personal:read); the reporter is not shown (QA16 F7).
    // (an alarm-made event's details name its entity: a person's id masked, privacy.js)
    const facts = [[t('field.address'), event.address], [t('field.details'), event.details && maskPersonalIds(event.details)]]
      .filter(([, v]) => v);
    if (facts.length) out.push(h('div', { 'data-role': 'event-facts' }, kv(facts)));
    if (event.status === 'cancelled') out.push(h('p', { class: 'notice', 'data-role': 'event-cancelled' }, t('event.cancelled')));
    if (Object.keys(event.agencyStatus || {}).length) {
      out.push(h('h3', {}, t('ops.agencyStatus')), agencyStatusTable(event, await agencyNames()));
    }
  }
  const selection = event
    ? await getJSON(`/api/v1/events/${encodeURIComponent(event.id)}/cameras`)
    : await nearPoint(situation);
  out.push(h('h3', {}, t('event.cameras')), camerasTable(selection));
  if (event) {
    // Only the actions the signed-in role may take (events:manage moves and approves, grants:issue shares, renews
    // and revokes); the server checks them all the same.
    if (can('events:manage')) out.push(statusForm(event, rerender));
    out.push(h('h3', {}, t('ops.linkages')), linkagesTable(event, rerender));
    if (can('grants:issue')) out.push(h('h3', {}, t('event.sharing')), await shareForm(event, selection, rerender));
    out.push(h('h3', {}, t('ops.grants')), await grantsTable(event, rerender));
    out.push(h('h3', {}, t('event.audit')), await auditTable(event));
  } else {
    out.push(h('p', { class: 'notice' }, t('event.noEvent')));
  }
  return out;
}

// The agencies' names by id (`GET /api/v1/agencies`), read once a minute at most; an id where it cannot be read.
let names = { at: 0, map: null };
export async function agencyNames() {
  if (names.map && Date.now() - names.at < 60000) return names.map;
  const list = await getJSON('/api/v1/agencies', null, { quiet: true }).catch(() => null);
  if (!Array.isArray(list)) return names.map || new Map();
  names = { at: Date.now(), map: new Map(list.map((a) => [a.id, a.name])) };
  return names.map;
}

function reportName(report) {
  return pick(report.statusName) || tOr(`areport.${report.status}`, report.status);
}

// An agency's progress on the event as it reports back (`agencyStatus`: its latest report; `agencyReports`: all of
// them, in order): acknowledged → dispatched → arrived → on-scene → completed, with the times in KST.
export function agencyStatusLine(event, agencyNamesById = names.map || new Map()) {
  return Object.entries(event.agencyStatus || {}).map(([agency, latest]) =>
    `${pick(agencyNamesById.get(agency)) || agency}: ${reportName(latest)} ${kst(latest.at, false)}`).join(', ');
}

function agencyStatusTable(event, agencyNamesById) {
  const reports = event.agencyReports || [];
  return h('table', { class: 'history', 'data-role': 'agency-status' }, h('tbody', {},
    Object.entries(event.agencyStatus || {}).map(([agency, latest]) => h('tr', { dataset: { agency, status: latest.status } },
      h('td', {}, pick(agencyNamesById.get(agency)) || agency),
      h('td', { class: 'agency-latest' }, h('strong', {}, reportName(latest)), ` ${kst(latest.at)}`),
      h('td', { class: 'agency-steps' }, reports.filter((r) => r.agency === agency)
        .map((r) => `${reportName(r)} ${kst(r.at, false)}`).join(' → '))))));
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

// An operator's action on the event (a POST), then the panel again; a refusal is said, not thrown.
async function act(path, body, rerender) {
  try {
    await postJSON(path, body);
    toast(t('ops.done'));
    rerender();
  } catch (error) {
    toast(errorText(error));
  }
}

const ORDER = ['received', 'acknowledged', 'sharing', 'dispatched', 'closed'];
const FINAL = new Set(['closed', 'cancelled']);

// The moves of the status machine (events.py check_transition) the event can still make, with a note for the trail.
// `sharing` is not offered: a share makes it.
function statusForm(event, rerender) {
  if (FINAL.has(event.status)) return h('p', { class: 'notice', 'data-role': 'event-final' }, t('ops.final'));
  const at = ORDER.indexOf(event.status);
  const moves = ['acknowledged', 'dispatched', 'closed']
    .filter((s) => ORDER.indexOf(s) > at && !(s === 'closed' && event.status === 'received')).concat(['cancelled']);
  const note = h('input', { name: 'note', maxlength: 2000, placeholder: t('ops.note'), 'aria-label': t('ops.note') });
  const path = `/api/v1/events/${encodeURIComponent(event.id)}/status`;
  // Cancelling ends the event for good (no undo) and sits next to "출동 처리": it asks first, with a reason for the
  // trail (the status API's `note`), QA16 F6.
  const confirm = cancelConfirm(event.id, note, (reason) => act(path, { status: 'cancelled', note: reason }, rerender));
  return h('div', { class: 'event-status-wrap' }, h('div', { class: 'form-row actions', 'data-role': 'event-status' }, note, moves.map((status) => h('button', {
    type: 'button', class: status === 'cancelled' ? 'danger' : '', dataset: { status }, 'aria-expanded': status === 'cancelled' ? 'false' : null,
    onclick: (e) => (status === 'cancelled' ? confirm.open(e.currentTarget) : act(path, { status, note: note.value }, rerender)),
  }, t(`estatus.to.${status}`)))), confirm.element);
}

// "사건을 취소할까요?": a reason (required; the note typed already fills it), confirm or go back. The question and the
// reason typed survive a redraw of the panel (a stream update) while it is open: `asking` (the event's id, the text).
let asking = null;
function cancelConfirm(eventId, note, send) {
  const reason = h('input', { name: 'reason', required: true, maxlength: 2000, 'aria-label': t('ops.cancelReason'),
    placeholder: t('ops.cancelReason'), oninput: () => { if (asking?.id === eventId) asking.text = reason.value; } });
  let opener = null;
  const element = h('form', { class: 'confirm', 'data-role': 'cancel-confirm', role: 'alertdialog', hidden: true,
    'aria-label': t('ops.cancelConfirm'), onsubmit: (e) => {
      e.preventDefault();
      const text = reason.value.trim();
      if (!text) { reason.value = ''; reason.reportValidity(); reason.focus(); return; }
      element.hidden = true;
      asking = null;
      send(text);
    } },
  h('p', {}, t('ops.cancelConfirm')),
  h('label', {}, t('ops.cancelReason'), reason),
  h('div', { class: 'form-row' },
    h('button', { type: 'submit', class: 'danger', 'data-action': 'confirm-cancel' }, t('ops.cancelYes')),
    h('button', { type: 'button', 'data-action': 'keep-event', onclick: () => {
      element.hidden = true;
      asking = null;
      opener = opener && document.contains(opener) ? opener : element.previousSibling?.querySelector('[data-status="cancelled"]');
      opener?.setAttribute('aria-expanded', 'false');
      opener?.focus();
    } }, t('ops.cancelNo'))));
  const show = (button, text) => {
    opener = button;
    button?.setAttribute('aria-expanded', 'true');
    reason.value = text;
    element.hidden = false;
  };
  if (asking?.id === eventId) queueMicrotask(() => show(element.previousSibling?.querySelector('[data-status="cancelled"]'), asking.text));
  return {
    element,
    open(button) {
      asking = { id: eventId, text: reason.value || note.value.trim() };
      show(button, asking.text);
      reason.focus();
    },
  };
}

// The agencies linked to the event: service, status, and for a request the 112 gate holds, approve or reject (PLAT-R4).
function linkagesTable(event, rerender) {
  const linkages = event.linkages || [];
  if (!linkages.length) return h('p', { class: 'notice' }, t('ops.noLinkages'));
  const reason = h('input', { name: 'reason', maxlength: 1000, placeholder: t('ops.reason'), 'aria-label': t('ops.reason') });
  const base = `/api/v1/events/${encodeURIComponent(event.id)}/linkages`;
  const table = h('table', { class: 'history', 'data-role': 'linkages' }, h('tbody', {}, linkages.map((l) => h('tr', {
    dataset: { linkage: l.id, status: l.status } },
  h('td', {}, l.agency), h('td', {}, l.service), h('td', { class: l.status === 'held' || l.status === 'failed' ? 'attention' : '' },
    tOr(`lstatus.${l.status}`, l.status)), h('td', {}, l.reason || ''),
  h('td', {}, l.status === 'held' && can('events:manage') ? [
    h('button', { type: 'button', class: 'primary', 'data-action': 'approve',
      onclick: () => act(`${base}/${encodeURIComponent(l.id)}/approve`, { reason: reason.value }, rerender) }, t('action.approve')),
    h('button', { type: 'button', 'data-action': 'reject',
      onclick: () => act(`${base}/${encodeURIComponent(l.id)}/reject`, { reason: reason.value }, rerender) }, t('action.reject')),
  ] : '')))));
  return linkages.some((l) => l.status === 'held') && can('events:manage') ? h('div', {}, table, reason) : table;
}

// The event's footage grants: agency, until when, and renew or revoke for the live ones (PLAT-R5).
async function grantsTable(event, rerender) {
  const grants = (await getJSON(`/api/v1/grants?event=${encodeURIComponent(event.id)}`).catch(() => ({ grants: [] }))).grants || [];
  if (!grants.length) return h('p', { class: 'notice' }, t('ops.noGrants'));
  return h('table', { class: 'history', 'data-role': 'grants' }, h('tbody', {}, grants.map((g) => h('tr', {
    dataset: { grant: g.id, status: g.status } },
  h('td', {}, g.agency), h('td', {}, tOr(`gstatus.${g.status}`, g.status)), h('td', {}, t('ops.until', { time: kst(g.expiresAt) })),
  h('td', {}, `${(g.cameras || []).length} CCTV`),
  h('td', {}, g.status === 'active' && can('grants:issue') ? [
    h('button', { type: 'button', 'data-action': 'renew',
      onclick: () => act(`/api/v1/grants/${encodeURIComponent(g.id)}/renew`, {}, rerender) }, t('action.renew')),
    h('button', { type: 'button', class: 'danger', 'data-action': 'revoke',
      onclick: () => act(`/api/v1/grants/${encodeURIComponent(g.id)}/revoke`, { reason: t('ops.revokedByOperator') }, rerender) },
    t('action.revoke')),
  ] : '')))));
}

async function shareForm(event, selection, rerender) {
  // Only agencies that can receive: a disabled one is refused by the API anyway.
  const agencies = (await getJSON('/api/v1/agencies').catch(() => [])).filter((a) => a.enabled !== false);
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
  const detail = event.history ? event : await getJSON(`/api/v1/events/${encodeURIComponent(event.id)}`);
  const rows = [...(detail.history || [])].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  // A person's status note is kept on the event (`notes`, in order), its audit line says only `noteChars`: the k-th
  // such line shows the k-th note (absent for a token that may not read notes).
  const notes = [...(detail.notes || [])];
  rows.forEach((r) => { if (r.noteChars && notes.length) r.note = notes.shift().text; });
  rows.reverse();
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
