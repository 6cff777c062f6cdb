// The open alarms the map shows, kept current by the SSE stream, and their grouping into
// situations: one icon per situation (the alarms of one asset: a facility and its sensors).
import { allListed } from './api.js';

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

export async function load() {
  // every page (a storm of device faults must not hide the alarms past the first 1,000 from the map)
  const [own, rollups] = await Promise.all([
    allListed(`/api/v1/alarms?status=${SHOWN}&derived=false`, 'alarms'),
    allListed(`/api/v1/alarms?status=${SHOWN}&derived=true`, 'alarms')]);
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
