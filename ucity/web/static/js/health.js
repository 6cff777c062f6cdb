// System health: devices offline, ingest rate, notification failures, from /health,
// /api/v1/devices/health and /api/v1/notifications/dead-letters; polled.
import { ApiError, authHeaders, errorText, getJSON } from './api.js';
import { t } from './i18n.js';
import { setPersonalTypes } from './privacy.js';
import { kst } from './time.js';
import { h, kv } from './ui.js';

const OFFLINE_SHOWN = 30;

export class HealthPanel {
  constructor({ body, chips }) {
    this.body = body;
    this.chips = chips;
    this.previous = null; // {at, accepted} of the last poll, for the ingest rate
    this.state = null;
  }

  async poll() {
    const [health, devices, dead] = await Promise.all([
      // open to anyone, but with the token guard on its component detail needs a token that reads data
      fetch('/health', { headers: authHeaders() }).then((r) => r.json()),
      getJSON('/api/v1/devices/health?status=offline'),
      // A role that may not read them (a reader: 403) or any other failure: not known, never shown as 0 (QA16 F5).
      getJSON('/api/v1/notifications/dead-letters').catch((error) => ({ unknown: error })),
    ]);
    setPersonalTypes(health.components?.privacy?.personalEntityTypes); // which entity types are a person's (privacy.js)
    const now = Date.now();
    const accepted = health.components?.ingest?.accepted ?? 0;
    const rate = this.previous && now > this.previous.at ? Math.max(0, (accepted - this.previous.accepted) / ((now - this.previous.at) / 1000)) : null;
    this.previous = { at: now, accepted };
    this.error = null;
    this.state = { health, devices, dead, rate, at: now };
    this.render();
  }

  // The poll failed (not signed in, a role without device health, the server away): said in the panel, and the top
  // bar's chips say "—" with the reason and the last good poll's time, not the last numbers as if current (QA16 F5).
  fail(error) {
    if (this.state) this.lastAt = this.state.at;
    this.state = null;
    this.error = error;
    this.previous = null; // the ingest rate starts again from the next good poll
    this.render();
  }

  render() {
    if (!this.state) {
      if (this.error) {
        const reason = errorText(this.error);
        const stale = this.lastAt ? t('health.staleSince', { time: kst(new Date(this.lastAt)) }) : '';
        for (const id of ['chip-offline', 'chip-ingest', 'chip-failures']) this.chip(id, null, false, [reason, stale].filter(Boolean).join(' · '));
        this.body.replaceChildren(h('p', { class: 'error', 'data-role': 'health-error' }, reason), stale ? h('p', { class: 'notice', 'data-role': 'health-stale' }, stale) : '');
      }
      return;
    }
    this.error = null;
    const { health, devices, dead, rate, at } = this.state;
    const subs = health.components?.subscriptions || {};
    // Dead letters not readable: the failures are not known (subscriptions failing alone would undercount them).
    const deadReason = dead.unknown ? (dead.unknown instanceof ApiError && dead.unknown.status === 403 ? t('health.noAccess') : errorText(dead.unknown)) : '';
    const failures = dead.unknown ? null : (dead.total || 0) + (subs.failing || 0);
    this.chip('chip-offline', devices.counts.offline, devices.counts.offline > 0);
    this.chip('chip-ingest', rate == null ? '…' : rate.toFixed(1), false);
    this.chip('chip-failures', failures, failures > 0, deadReason);
    const ingest = health.components?.ingest || {};
    this.body.replaceChildren(
      h('p', { class: 'count' }, `${t(`health.status.${health.status}`) || health.status} · ${t('health.updated')} ${kst(new Date(at))}`),
      block(t('health.devices'), kv([
        [t('health.online'), devices.counts.online], [t('health.offline'), devices.counts.offline], [t('health.unknown'), devices.counts.unknown],
      ]), h('h3', {}, t('health.offlineList')), devices.devices.length
        ? h('ul', { class: 'plain', 'data-role': 'offline-devices' }, devices.devices.slice(0, OFFLINE_SHOWN).map((d) => h('li', {},
          `${d.device_id} · ${d.entity_type || ''} · ${kst(d.lastReported)}`)))
        : (offlineWithheld(devices) ? '' : h('p', { class: 'notice' }, t('health.none'))), withheldNote(devices)),
      block(t('health.ingest'), kv([
        [t('health.rate'), rate == null ? '…' : `${rate.toFixed(1)} ${t('chip.ingestUnit')}`],
        [t('health.accepted'), ingest.accepted], [t('health.rejected'), ingest.rejected],
      ])),
      block(t('health.notifications'), kv([
        [t('health.deadLetters'), dead.unknown ? `— (${deadReason})` : dead.total], [t('health.subscriptionsFailing'), subs.failing],
        [t('health.subscriptionsDropped'), subs.dropped], [t('health.streamClients'), health.components?.alarms?.streamClients],
      ]), dead.deadLetters?.length ? h('ul', { class: 'plain' }, dead.deadLetters.slice(0, 5).map((d) => h('li', { class: 'bad-text' },
        `${kst(d.failedAt)} · ${d.notifier} · ${d.error}`))) : ''),
      block(t('health.store'), kv([[t('health.queued'), health.components?.store?.queued]])));
  }

  // `value` null: not known (the reason in the chip's tooltip and its accessible name), shown as "—".
  chip(id, value, bad, reason = '') {
    const chip = document.getElementById(id);
    const unknown = value == null;
    chip.querySelector('[data-value]').textContent = unknown ? '—' : String(value);
    chip.classList.toggle('bad', Boolean(bad) && !unknown);
    chip.classList.toggle('stale', unknown);
    chip.dataset.state = unknown ? 'unknown' : 'known';
    if (unknown && reason) chip.title = reason; else chip.removeAttribute('title');
  }
}

// Devices of a personal type left out for a caller without personal:read (QA17 F3): the offline chip counts them, the
// list does not show them; how many of them are offline, and the server's bilingual reason, under the list.
function offlineWithheld(devices) {
  return devices.withheld?.counts?.offline || 0;
}

function withheldNote(devices) {
  const withheld = devices.withheld;
  if (!offlineWithheld(devices)) return ''; // none of them offline: the chip and the list agree
  return h('p', { class: 'notice', 'data-role': 'offline-withheld' },
    `${t('health.offlineWithheld', { n: offlineWithheld(devices) })} — ${withheld.detail}`);
}

function block(title, ...children) {
  return h('section', { class: 'health-block' }, h('h3', {}, title), ...children);
}
