// The open alarms the map shows, kept current by the SSE stream, and their grouping into
// situations: one icon per situation (the alarms of one asset: a facility and its sensors).
import { getJSON } from './api.js';

export const LEVELS = ['interest', 'caution', 'warning', 'serious'];
const SHOWN = 'active-unacknowledged,active-acknowledged,cleared-unacknowledged';
const alarms = new Map();
const derived = new Set(); // ids of open derived alarms (an asset's roll-up): events may come from them
const listeners = [];

export function rank(alarm) { return alarm.level ? LEVELS.indexOf(alarm.level) + 1 : 0; }

export function onChange(fn) { listeners.push(fn); }
function changed() { for (const fn of listeners) fn(); }

export function openAlarms() { return [...alarms.values()]; }
export function get(id) { return alarms.get(id); }

// Every open alarm, page by page (the API gives at most 1000 at once): a storm of device faults must not hide
// the alarms past the first page from the map. Newest first; an alarm raised meanwhile shifts the pages by one,
// so one may come twice (kept once, by id), and the stream brings the new one anyway.
const PAGE = 1000;
const MAX_PAGES = 100;
async function openPages(derivedOnes) {
  const out = [];
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const got = await getJSON(`/api/v1/alarms?status=${SHOWN}&derived=${derivedOnes}&limit=${PAGE}&offset=${page * PAGE}`);
    out.push(...got.alarms);
    if (got.alarms.length < PAGE || out.length >= got.total) break;
  }
  return out;
}

export async function load() {
  const [own, rollups] = await Promise.all([openPages(false), openPages(true)]);
  alarms.clear();
  derived.clear();
  for (const alarm of own) alarms.set(alarm.id, alarm);
  for (const alarm of rollups) derived.add(alarm.id);
  changed();
}

// Is this alarm one of the situations on show (itself or its asset's roll-up)?
export function known(id) { return alarms.has(id) || derived.has(id); }

// One alarm from the stream: kept while it needs attention, dropped once handled.
export function apply(alarm) {
  if (alarm.derived) {
    if (SHOWN.split(',').includes(alarm.status)) derived.add(alarm.id); else derived.delete(alarm.id);
    return;
  }
  if (SHOWN.split(',').includes(alarm.status)) alarms.set(alarm.id, alarm); else alarms.delete(alarm.id);
  changed();
}

// Situations: alarms grouped by their asset (parent, else entity); worst level first.
export function situations(list = openAlarms()) {
  const groups = new Map();
  for (const alarm of list) {
    const key = alarm.parent_id || alarm.entity_id;
    if (!groups.has(key)) groups.set(key, { key, alarms: [] });
    groups.get(key).alarms.push(alarm);
  }
  const out = [...groups.values()].map((g) => {
    g.alarms.sort((a, b) => rank(b) - rank(a) || (b.raised_at > a.raised_at ? 1 : -1));
    const worst = g.alarms[0];
    return { ...g, worst, level: worst.level || 'fault', location: g.alarms.find((a) => a.location)?.location,
      unacknowledged: g.alarms.some((a) => a.status.endsWith('-unacknowledged')) };
  });
  return out.sort((a, b) => rank(b.worst) - rank(a.worst));
}
