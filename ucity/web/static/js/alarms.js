// The alarm list: filters map to /api/v1/alarms query parameters; reloaded on every stream event.
import * as actions from './actions.js';
import { errorText, getJSON } from './api.js';
import { pick, t } from './i18n.js';
import { kst } from './time.js';
import { h, throttle } from './ui.js';

const LIMIT = 100;

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
    this.reload = throttle(() => this.load(), 700);
    form.addEventListener('change', () => this.load());
    form.addEventListener('submit', (event) => { event.preventDefault(); this.load(); });
  }

  query() {
    const params = new URLSearchParams({ limit: LIMIT });
    for (const [name, value] of new FormData(this.form)) if (value) params.set(name, value);
    return params;
  }

  async load() {
    try {
      const body = await getJSON(`/api/v1/alarms?${this.query()}`);
      const fresh = this.seen ? body.alarms.filter((a) => !this.seen.has(a.id)).map((a) => a.id) : [];
      this.seen = new Set([...(this.seen || []), ...body.alarms.map((a) => a.id)]);
      this.alarms = body.alarms;
      this.total = body.total;
      this.render(new Set(fresh));
    } catch (error) {
      this.count.textContent = `${t('alarms.loadError')}: ${errorText(error)}`;
      this.count.dataset.error = String(error.status || 'network');
      return;
    }
    delete this.count.dataset.error;
  }

  render(fresh = new Set()) {
    const focused = document.activeElement?.closest?.('[data-alarm-id]')?.dataset.alarmId;
    this.count.textContent = t('alarms.count', { n: this.total ?? 0 });
    this.list.replaceChildren(...(this.alarms.length ? this.alarms.map((a) => this.row(a, fresh.has(a.id)))
      : [h('li', { class: 'notice' }, t('alarms.empty'))]));
    if (focused) this.list.querySelector(`[data-alarm-id="${CSS.escape(focused)}"] button`)?.focus();
  }

  row(alarm, fresh) {
    const can = actions.allowed(alarm.status);
    const level = alarm.level || 'fault';
    const classes = ['alarm', `lvl-b-${level}`];
    if (alarm.status.endsWith('-unacknowledged')) classes.push('unack');
    if (fresh) classes.push('fresh');
    const meta = [shortId(alarm.entity_id), kst(alarm.raised_at)];
    if (alarm.count > 1) meta.push(`×${alarm.count}`);
    if (alarm.assignee) meta.push(`${t('field.assignee')}: ${alarm.assignee}`);
    return h('li', { class: classes.join(' '), dataset: { alarmId: alarm.id, status: alarm.status, level } },
      h('div', { class: 'alarm-head' }, levelBadge(alarm), h('span', { class: 'alarm-title' }, alarmTitle(alarm))),
      h('div', { class: 'alarm-meta' }, meta.join(' · ')),
      h('div', { class: 'alarm-actions' },
        h('span', { class: 'alarm-status', 'data-role': 'status' }, t(`status.${alarm.status}`)),
        can.acknowledge && h('button', { type: 'button', class: 'primary', 'data-action': 'acknowledge',
          'aria-label': `${t('action.acknowledge')}: ${alarmTitle(alarm)}`,
          onclick: async () => { await actions.acknowledge(alarm.id); this.load(); } }, t('action.acknowledge')),
        h('button', { type: 'button', 'data-action': 'details', 'aria-label': `${t('action.details')}: ${alarmTitle(alarm)}`,
          onclick: () => this.onDetails(alarm) }, t('action.details'))));
  }
}
