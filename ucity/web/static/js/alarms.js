// The alarm list: filters map to /api/v1/alarms query parameters; reloaded on every stream event.
import * as actions from './actions.js';
import { errorText, getJSON } from './api.js';
import { agencyStatusLine } from './ops.js';
import { entityLabel } from './privacy.js';
import { pick, t } from './i18n.js';
import { kst } from './time.js';
import { h, patch, pointerHold, throttle } from './ui.js';

const PAGE = 100; // rows per "more"
const API_MAX = 1000; // the alarm API's largest page
const UNACKNOWLEDGED = ['active-unacknowledged', 'cleared-unacknowledged'];
const URGENT_LEVELS = ['serious', 'warning'];
const STATUS_GROUPS = { active: ['active-unacknowledged', 'active-acknowledged'], cleared: ['cleared-unacknowledged', 'cleared-acknowledged'] };
const LEVEL_RANK = { serious: 4, warning: 3, caution: 2, interest: 1 };

// What an operator must act on never drops out of sight in a storm (QA16 F1): the unacknowledged `serious` and
// `warning` alarms the filters allow are read on their own (worst first) and listed above the newest-first page.
// The query for them, or null when the filters leave none (e.g. status "closed" or level "caution").
export function urgentQuery(filters) {
  const statuses = filters.get('status') ? filters.get('status').split(',').flatMap((s) => STATUS_GROUPS[s] || [s]) : null;
  const levels = filters.get('level') ? filters.get('level').split(',') : null;
  const status = UNACKNOWLEDGED.filter((s) => !statuses || statuses.includes(s));
  const level = URGENT_LEVELS.filter((l) => !levels || levels.includes(l));
  if (!status.length || !level.length || filters.get('kind') === 'fault') return null;
  const query = new URLSearchParams(filters);
  query.set('status', status.join(','));
  query.set('level', level.join(','));
  query.set('limit', API_MAX);
  return query;
}

export function shortId(id) { return String(id || '').replace(/^urn:ngsi-ld:/, ''); }

export function levelBadge(alarm) {
  const level = alarm.level || 'fault';
  return h('span', { class: `lvl lvl-${level}` }, t(`level.${level}`));
}

export function alarmTitle(alarm) {
  return pick(alarm.description) || alarm.evidence?.ruleName && pick(alarm.evidence.ruleName) || alarm.rule_id;
}

export class AlarmList {
  constructor({ form, list, count, onDetails }) {
    this.form = form;
    this.list = list;
    this.count = count;
    this.onDetails = onDetails;
    this.seen = null;
    this.alarms = [];
    this.urgent = [];
    this.urgentTotal = 0;
    this.events = new Map(); // alarm id -> its open operation-centre event (main.js, every refresh_s)
    this.wanted = PAGE; // newest-first rows asked for; "more" adds a page, a filter change starts again
    this.reload = throttle(() => this.load(), 700);
    // Reloaded on every stream event (a storm: every 0.7 s): drawn in place, and never while a button in the list is
    // being pressed, so an "acknowledge" click is not lost to a redraw (ui.js patch, pointerHold).
    this.hold = pointerHold(list);
    form.addEventListener('change', () => { this.wanted = PAGE; this.load(); });
    form.addEventListener('submit', (event) => { event.preventDefault(); this.wanted = PAGE; this.load(); });
  }

  query() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(this.form)) if (value) params.set(name, value);
    return params;
  }

  // The first `wanted` alarms newest first (the API gives at most 1,000 a page) and their total.
  async newest(filters) {
    const out = [];
    let total = 0;
    for (let offset = 0; offset < this.wanted; offset += API_MAX) {
      const query = new URLSearchParams(filters);
      query.set('limit', Math.min(API_MAX, this.wanted - offset));
      query.set('offset', offset);
      const body = await getJSON(`/api/v1/alarms?${query}`);
      out.push(...body.alarms);
      total = body.total;
      if (body.alarms.length < Number(query.get('limit'))) break;
    }
    return { alarms: out, total };
  }

  async more() {
    this.wanted += PAGE;
    const before = this.rows().length;
    await this.load();
    this.list.querySelectorAll('[data-alarm-id] [data-action="details"]')[before]?.focus();
  }

  rows() { return [...this.urgent, ...this.alarms]; }

  // The open operation-centre events (polled): an alarm's row says how the agencies its event is shared with are
  // getting on ("119 구조대: 현장 도착 07:10:02 KST"), from the event's `agencyStatus`.
  setEvents(events) {
    const next = new Map(events.filter((e) => e.alarm && Object.keys(e.agencyStatus || {}).length).map((e) => [e.alarm, e]));
    const before = JSON.stringify([...this.events].map(([id, e]) => [id, e.agencyStatus]));
    this.events = next;
    if (JSON.stringify([...next].map(([id, e]) => [id, e.agencyStatus])) !== before && this.total != null) this.render();
  }

  async load() {
    try {
      const filters = this.query();
      const pin = urgentQuery(filters);
      const [urgent, body] = await Promise.all([
        pin ? getJSON(`/api/v1/alarms?${pin}`) : { alarms: [], total: 0 },
        this.newest(filters)]);
      // worst first, then newest (the API's order); each alarm once
      this.urgent = urgent.alarms.slice().sort((a, b) => (LEVEL_RANK[b.level] || 0) - (LEVEL_RANK[a.level] || 0));
      this.urgentTotal = urgent.total;
      const pinned = new Set(this.urgent.map((a) => a.id));
      this.alarms = body.alarms.filter((a) => !pinned.has(a.id));
      this.total = body.total;
      this.hasMore = body.alarms.length < body.total;
      await this.hold.settled();
      const all = this.rows();
      const fresh = this.seen ? all.filter((a) => !this.seen.has(a.id)).map((a) => a.id) : [];
      this.seen = new Set([...(this.seen || []), ...all.map((a) => a.id)]);
      this.render(new Set(fresh));
    } catch (error) {
      this.count.textContent = `${t('alarms.loadError')}: ${errorText(error)}`;
      this.count.dataset.error = String(error.status || 'network');
      return;
    }
    delete this.count.dataset.error;
  }

  // "알람 619건 · 112건 표시": how many match, and how many are on show when not all are; the unacknowledged
  // warning/serious ones first under their own heading, then the newest, then "더 보기" for the next 100.
  render(fresh = new Set()) {
    const focused = document.activeElement?.closest?.('[data-alarm-id]')?.dataset.alarmId;
    const shown = this.rows().length;
    const total = Math.max(this.total ?? 0, shown);
    this.count.textContent = t('alarms.count', { n: total }) + (shown < total ? ` · ${t('alarms.shown', { shown, total })}` : '');
    this.count.dataset.shown = String(shown);
    this.count.dataset.total = String(total);
    const items = [];
    if (this.urgent.length) {
      items.push(h('li', { class: 'list-head urgent', 'data-role': 'urgent-head' },
        t('alarms.urgent', { n: this.urgentTotal }) + (this.urgentTotal > this.urgent.length ? ` · ${t('alarms.shown', { shown: this.urgent.length, total: this.urgentTotal })}` : '')));
      items.push(...this.urgent.map((a) => this.row(a, fresh.has(a.id), true)));
      if (this.alarms.length) items.push(h('li', { class: 'list-head', 'data-role': 'newest-head' }, t('alarms.newest')));
    }
    items.push(...this.alarms.map((a) => this.row(a, fresh.has(a.id))));
    if (!items.length) items.push(h('li', { class: 'notice' }, t('alarms.empty')));
    if (this.hasMore) {
      items.push(h('li', { class: 'more' }, h('button', { type: 'button', 'data-action': 'more', onclick: () => this.more() },
        t('alarms.more', { n: Math.min(PAGE, total - shown) }))));
    }
    patch(this.list, items);
    if (focused && !this.list.contains(document.activeElement)) this.list.querySelector(`[data-alarm-id="${CSS.escape(focused)}"] button`)?.focus();
  }

  row(alarm, fresh, urgent = false) {
    const can = actions.allowed(alarm.status);
    const level = alarm.level || 'fault';
    const classes = ['alarm', `lvl-b-${level}`];
    if (urgent) classes.push('pinned');
    if (alarm.status.endsWith('-unacknowledged')) classes.push('unack');
    if (fresh) classes.push('fresh');
    const meta = [entityLabel(alarm.entity_id, alarm.entity_type, alarm.withheld?.includes('entity_id')), kst(alarm.raised_at)];
    if (alarm.count > 1) meta.push(`×${alarm.count}`);
    if (alarm.assignee) meta.push(`${t('field.assignee')}: ${alarm.assignee}`);
    const event = this.events.get(alarm.id);
    return h('li', { class: classes.join(' '), dataset: { alarmId: alarm.id, status: alarm.status, level, pinned: urgent ? 'true' : 'false' } },
      h('div', { class: 'alarm-head' }, levelBadge(alarm), h('span', { class: 'alarm-title' }, alarmTitle(alarm))),
      h('div', { class: 'alarm-meta' }, meta.join(' · ')),
      event && h('div', { class: 'alarm-meta agency-line', 'data-role': 'agency-status' }, agencyStatusLine(event)),
      h('div', { class: 'alarm-actions' },
        h('span', { class: 'alarm-status', 'data-role': 'status' }, t(`status.${alarm.status}`)),
        can.acknowledge && h('button', { type: 'button', class: 'primary', 'data-action': 'acknowledge',
          'aria-label': `${t('action.acknowledge')}: ${alarmTitle(alarm)}`,
          onclick: async () => { await actions.acknowledge(alarm.id); this.load(); } }, t('action.acknowledge')),
        h('button', { type: 'button', 'data-action': 'details', 'aria-label': `${t('action.details')}: ${alarmTitle(alarm)}`,
          onclick: () => this.onDetails(alarm) }, t('action.details'))));
  }
}
