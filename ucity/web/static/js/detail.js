// The detail panel: a situation (its alarms, each with its actions and audit trail, and the
// operation-center part: nearest cameras, sharing with an agency), or a facility (facility.js).
import * as actions from './actions.js';
import { alarmTitle, levelBadge } from './alarms.js';
import { entity, errorText, getJSON } from './api.js';
import { onLangChange, pick, t, tOr } from './i18n.js';
import { FacilityView } from './facility.js';
import { eventLabel, opsSection } from './ops.js';
import { entityLabel, entityType, isPersonal } from './privacy.js';
import * as store from './store.js';
import { kst } from './time.js';
import { debounce, h, kv, patch, pointerHold } from './ui.js';

const OUTCOMES = ['real', 'false-user', 'false-device', 'test', 'duplicate'];
const SHOWN = 8; // a situation's alarms drawn in full at first ("외 N건" and "모두 보기" for the rest)
const ASSIGNEE_MAX = 200; // the alarm API keeps at most 200 characters of an assignee (alarms/api.py assign)

export class DetailPanel {
  constructor({ panel, title, body, closeButton, map }) {
    Object.assign(this, { panel, title, body, map });
    this.view = null;
    this.opener = null;
    // The panel is drawn again on every change (the stream, a poll, an action): what did not change is kept as it is,
    // and nothing is swapped while the operator is pressing a button in it (`ui.js` patch, pointerHold), so a click on
    // "acknowledge" or "cancel" is never lost to a redraw (QA16 leftover).
    this.hold = pointerHold(panel);
    closeButton.addEventListener('click', () => this.close());
    panel.addEventListener('keydown', (event) => { if (event.key === 'Escape') this.close(); });
    this.refresh = debounce(() => this.view && this.draw(this.view), 200);
    onLangChange(() => this.refresh());
  }

  open(view) {
    if (this.panel.hidden) this.opener = document.activeElement;
    this.view = view;
    this.panel.hidden = false;
    this.panel.dataset.kind = view.kind;
    this.panel.dataset.key = view.key;
    return this.draw(view).then(() => this.title.focus());
  }

  // A view that cannot be read (not signed in, a role without access) says why instead of breaking.
  draw(view) {
    return view.render().catch((error) => {
      if (this.view === view) this.body.replaceChildren(h('p', { class: 'error', 'data-role': 'detail-error' }, errorText(error)));
    });
  }

  close({ keepFocus = false } = {}) {
    if (this.panel.hidden) return;
    this.panel.hidden = true;
    this.view = null;
    if (!keepFocus && this.opener && document.contains(this.opener)) this.opener.focus();
  }

  // An alarm changed on the stream: re-render if it is on show.
  alarmChanged(alarm) {
    if (this.view && this.view.kind === 'situation' && this.view.covers(alarm)) this.refresh();
  }

  showSituation(key, firstAlarmId) {
    return this.open(new SituationView(this, key, firstAlarmId));
  }

  // An operation-center event that no alarm stands for.
  showEvent(event) {
    const view = new SituationView(this, event.entityId || event.id);
    view.event = event;
    return this.open(view);
  }

  showFacility(id) {
    return this.open(new FacilityView(this, id));
  }
}

class SituationView {
  constructor(panel, key, firstAlarmId) {
    this.kind = 'situation';
    this.panel = panel;
    this.key = key;
    this.firstAlarmId = firstAlarmId;
    this.ids = new Set();
  }

  covers(alarm) { return this.ids.has(alarm.id) || (alarm.parent_id || alarm.entity_id) === this.key; }

  async alarms() {
    const situation = store.situations().find((s) => s.key === this.key);
    const list = situation ? [...situation.alarms] : [];
    if (this.firstAlarmId && !list.some((a) => a.id === this.firstAlarmId)) list.unshift({ id: this.firstAlarmId });
    list.sort((a, b) => (a.id === this.firstAlarmId ? -1 : b.id === this.firstAlarmId ? 1 : 0));
    // Full alarms with their history (the audit trail), newest state from the API: the first SHOWN (worst first)
    // unless the operator asked for all; how many more there are is said under them (QA16 F8).
    this.more = this.all ? 0 : Math.max(0, list.length - SHOWN);
    return Promise.all(list.slice(0, this.all ? list.length : SHOWN).map((a) => getJSON(`/api/v1/alarms/${encodeURIComponent(a.id)}`)));
  }

  // Everything is built first, then put on the page at once: after any press in the panel has become its click, and
  // in place (what is the same stays the same node).
  async show(titleParts, bodyParts) {
    await this.panel.hold.settled();
    if (this.panel.view !== this) return; // closed, or another view opened meanwhile
    patch(this.panel.title, ...titleParts);
    patch(this.panel.body, ...bodyParts);
  }

  async render() {
    let alarms;
    try {
      alarms = await this.alarms();
    } catch (error) { // not signed in, or a role that may not read alarms: said, not a broken panel
      await this.show([t('event.title'), ' · ', this.event ? eventLabel(this.event) : entityLabel(this.key)],
        [h('p', { class: 'error', 'data-role': 'detail-error' }, errorText(error))]);
      return;
    }
    this.ids = new Set(alarms.map((a) => a.id));
    await ruleNames(alarms);
    // A person's entity (a care household): neither its name nor its address is read or shown, and its id is masked.
    const personal = isPersonal(entityType(this.key)) || alarms.some((a) => isPersonal(a.entity_type));
    const asset = personal ? null : await entity(this.key, ['name', 'cameraName', 'address']).catch(() => null);
    const worst = alarms[0];
    const situation = { key: this.key, alarms, event: this.event, location: alarms.find((a) => a.location)?.location || this.event?.location };
    this.situation = situation; // read by the kept "location" button, which may be a node of an earlier draw
    const ops = await opsSection(situation, this.panel);
    // An operation-center event's entity has no name: its service and type, not "CityEvent:<hex>" (QA7).
    await this.show([t('event.title'), ' · ', asset?.name || (this.event ? eventLabel(this.event) : entityLabel(this.key))], [
      h('div', { class: 'form-row' }, worst ? levelBadge(worst) : '',
        asset?.address ? h('span', {}, [asset.address.addressLocality, asset.address.district, asset.address.streetAddress].filter(Boolean).join(' ')) : '',
        h('button', { type: 'button', onclick: () => this.panel.map.flyTo(this.situation) }, t('field.location'))),
      alarms.length ? h('h3', {}, t('event.alarms')) : '', // an event no alarm made (a 112 report): no empty heading
      ...alarms.map((alarm) => this.alarmBlock(alarm)),
      this.more ? h('p', { class: 'notice', 'data-role': 'more-alarms' }, t('event.moreAlarms', { n: this.more }), ' ',
        h('button', { type: 'button', 'data-action': 'all-alarms', onclick: () => { this.all = true; this.panel.refresh(); } },
          t('event.allAlarms'))) : '',
      ops]);
  }

  alarmBlock(alarm) {
    const can = actions.allowed(alarm.status);
    const rerender = () => this.render();
    const run = (fn) => async (event) => { event.preventDefault(); await fn(new FormData(event.target.closest('form') || undefined)); rerender(); };
    const facility = alarm.parent_id && alarm.parent_id.includes(':Building:') ? alarm.parent_id
      : alarm.entity_id.includes(':Building:') ? alarm.entity_id : null;
    return h('section', { class: 'alarm-detail', dataset: { alarmId: alarm.id, status: alarm.status } },
      h('div', { class: 'alarm-head' }, levelBadge(alarm), h('strong', { class: 'alarm-title' }, alarmTitle(alarm)),
        h('span', { class: 'alarm-status', 'data-role': 'status' }, t(`status.${alarm.status}`))),
      kv([
        [t('field.entity'), entityLabel(alarm.entity_id, alarm.entity_type, alarm.withheld?.includes('entity_id'))], [t('field.rule'), ruleLabel(alarm)],
        [t('field.value'), valueLabel(alarm.evidence)],
        [t('field.raised'), kst(alarm.raised_at)], [t('field.lastSeen'), kst(alarm.last_seen)], [t('field.count'), alarm.count],
        [t('field.assignee'), alarm.assignee], [t('field.outcome'), alarm.outcome && t(`outcome.${alarm.outcome}`)],
      ]),
      h('div', { class: 'form-row' },
        can.acknowledge && h('button', { type: 'button', class: 'primary', 'data-action': 'acknowledge', onclick: run(() => actions.acknowledge(alarm.id)) }, t('action.acknowledge')),
        can.clear && h('button', { type: 'button', 'data-action': 'clear', onclick: run(() => actions.clear(alarm.id)) }, t('action.clear')),
        facility && h('button', { type: 'button', 'data-action': 'facility', onclick: () => this.panel.showFacility(facility) }, t('action.openFacility'))),
      // An assignee is a name (required, at most 200 characters as the API keeps); taking it off is its own button, never
      // an empty field sent by mistake (QA16 F11).
      can.assign && h('form', { class: 'form-row', 'data-role': 'assign', onsubmit: run((f) => actions.assign(alarm.id, String(f.get('assignee') || '').trim().slice(0, ASSIGNEE_MAX))) },
        h('label', {}, t('field.assignee'), h('input', { name: 'assignee', value: alarm.assignee || '', required: true,
          maxlength: ASSIGNEE_MAX, pattern: '.*\\S.*', title: t('assign.hint') })),
        h('button', { type: 'submit', 'data-action': 'assign' }, t('action.assign')),
        alarm.assignee && h('button', { type: 'button', 'data-action': 'unassign', onclick: run(() => actions.assign(alarm.id, null)) },
          t('action.unassign'))),
      can.readOnly && h('p', { class: 'notice', 'data-role': 'read-only' }, t('auth.readOnly')),
      can.comment && h('form', { class: 'form-row', onsubmit: run((f) => actions.comment(alarm.id, f.get('text'))) },
        h('label', {}, t('field.comment'), h('input', { name: 'text', required: true, maxlength: 4000 })),
        h('button', { type: 'submit', 'data-action': 'comment' }, t('action.comment'))),
      can.close && h('form', { class: 'form-row', onsubmit: run((f) => actions.close(alarm.id, f.get('outcome'), f.get('note'))) },
        h('label', {}, t('field.outcome'), h('select', { name: 'outcome' }, OUTCOMES.map((o) => h('option', { value: o }, t(`outcome.${o}`))))),
        h('label', {}, t('field.note'), h('input', { name: 'note', maxlength: 2000 })),
        h('button', { type: 'submit', 'data-action': 'close' }, t('action.close'))),
      h('h3', {}, t('event.history')),
      historyTable(alarm.history || []));
  }
}

export function historyTable(history) {
  return h('table', { class: 'history' },
    h('tbody', {}, history.slice().reverse().map((entry) => h('tr', {},
      h('td', {}, kst(entry.at)), h('td', {}, t(`history.${entry.action}`) || entry.action), h('td', {}, entry.actor),
      h('td', {}, describe(entry))))));
}

function describe(entry) {
  if (entry.action === 'commented') return entry.text || '';
  if (entry.action === 'closed') return [entry.outcome && t(`outcome.${entry.outcome}`), entry.note].filter(Boolean).join(' · ');
  if (entry.action === 'assigned') return entry.assignee || '–';
  if (entry.level) return t(`level.${entry.level}`);
  if (entry.group) return pick(entry.group);
  return '';
}

// A rule by its name, not its id (QA16 F10): the alarm's own (`evidence.ruleName`), else the rules API's (a role with
// config:read; read once per rule), else the id.
const RULE_NAMES = new Map(); // rule id -> its name ({ko, en} or a string), null if it cannot be read
async function ruleNames(alarms) {
  const wanted = [...new Set(alarms.filter((a) => a.rule_id && !a.evidence?.ruleName && !RULE_NAMES.has(a.rule_id)).map((a) => a.rule_id))];
  await Promise.all(wanted.map(async (id) => {
    const rule = await getJSON(`/api/v1/rules/${encodeURIComponent(id)}`, null, { quiet: true }).catch(() => null);
    RULE_NAMES.set(id, rule?.name || null);
  }));
}

export function ruleLabel(alarm) {
  return pick(alarm.evidence?.ruleName) || pick(RULE_NAMES.get(alarm.rule_id)) || alarm.rule_id;
}

// The value that raised the alarm: the attribute in words when it is a known one ("기울기 변화(평가) 3.1"), else as given.
function valueLabel(evidence) {
  if (evidence?.value == null) return null;
  const attr = evidence.attribute ?? '';
  return `${tOr(`attr.${attr}`, attr)} ${evidence.value}`.trim();
}
