// Starts the dashboard: map, alarm list, facilities, health, detail panel, live stream, language.
import { AlarmList } from './alarms.js';
import { SignIn, mayUseDashboard } from './auth.js';
import { Cue } from './cue.js';
import { DetailPanel } from './detail.js';
import { FacilityList } from './facility.js';
import { HealthPanel } from './health.js';
import { apply, config, onLangChange, setLang } from './i18n.js';
import { LiveStream } from './live.js';
import { CityMap } from './map.js';
import { agencyNames, announceArrivals, openEvents } from './ops.js';
import { actor, setActor } from './api.js';
import * as store from './store.js';

const $ = (id) => document.getElementById(id);
const HEALTH_POLL_MS = 5000;

// A tab chosen by the operator (a click, the arrow keys, a top-bar chip) closes an open detail panel, which lies over
// the side panel below its tab bar: the tab's content is what was asked for (QA16 F12).
function tabs(chosen = () => {}) {
  const buttons = [...document.querySelectorAll('[role="tab"]')];
  const pick = (name) => { select(name); chosen(); };
  const select = (name) => {
    for (const b of buttons) {
      const on = b.dataset.tab === name;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      $(b.getAttribute('aria-controls')).hidden = !on;
    }
  };
  buttons.forEach((b, i) => {
    b.addEventListener('click', () => pick(b.dataset.tab));
    b.addEventListener('keydown', (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = buttons[(i + step + buttons.length) % buttons.length];
      pick(next.dataset.tab);
      next.focus();
    });
  });
  for (const chip of document.querySelectorAll('.chip[data-tab]')) chip.addEventListener('click', () => pick(chip.dataset.tab));
  return select;
}

// The operator's display name (api.js `actor()`): typed under the signed-in principal, forgotten on sign-out and on
// a sign-in as someone else (auth.js), at most 200 characters as the server takes (X-Ucity-Actor).
function operator(owner) {
  const input = $('actor');
  input.maxLength = 200;
  input.value = actor();
  input.addEventListener('change', () => setActor(input.value, owner()));
}

async function start() {
  let auth = null;
  apply();
  let detail = null;
  const selectTab = tabs(() => detail?.close({ keepFocus: true }));
  operator(() => (auth?.signedIn ? auth.principal.id : ''));
  for (const button of document.querySelectorAll('[data-lang]')) button.addEventListener('click', () => setLang(button.dataset.lang));

  const map = new CityMap($('map'), {
    onSituation: (key) => detail.showSituation(key),
    onFacility: (id) => detail.showFacility(id),
    onEvent: (event) => detail.showEvent(event),
  });
  detail = new DetailPanel({ panel: $('detail'), title: $('detail-title'), body: $('detail-body'), closeButton: $('detail-close'), map });
  const openAlarm = (alarm) => detail.showSituation(alarm.parent_id || alarm.entity_id, alarm.id);
  const alarms = new AlarmList({ form: $('alarm-filters'), list: $('alarm-list'), count: $('alarm-count'), onDetails: openAlarm });
  const facilities = new FacilityList({ list: $('facility-list'), filter: $('facility-filter'), count: $('facility-count'), onOpen: (id) => detail.showFacility(id) });
  const health = new HealthPanel({ body: $('health-body') });
  const cue = new Cue({ banner: $('cue'), text: $('cue-text'), open: $('cue-open'), dismiss: $('cue-dismiss'), toggle: $('sound-toggle'),
    onOpen: (alarm) => { selectTab('alarms'); openAlarm(alarm); } });

  for (const box of document.querySelectorAll('#layers input[name="layer"]')) {
    map.setVisible(box.value, box.checked);
    box.addEventListener('change', () => map.setVisible(box.value, box.checked));
  }
  onLangChange(() => { alarms.render(); facilities.render(); health.render(); });

  let connectedBefore = false;
  // After a reconnection the server replays from Last-Event-ID; reloading as well covers a replay
  // buffer that has moved on.
  const live = new LiveStream((type, alarm) => {
    store.apply(alarm);
    alarms.reload();
    detail.alarmChanged(alarm);
    if (cue.wants(type, alarm)) cue.show(alarm);
  }, $('live-state'), { onOpen: () => { if (connectedBefore) { store.load().catch(() => {}); alarms.load(); } connectedBefore = true; } });

  // Everything the page reads; each part fails on its own (a 401 opens the sign-in, a 403 is said where
  // it happens), and all of it is read again after sign-in.
  let mapLoaded = false;
  const events = async () => {
    const list = await openEvents();
    if (list.some((e) => Object.keys(e.agencyStatus || {}).length)) await agencyNames(); // names for the progress lines
    map.setOpsEvents(list); alarms.setEvents(list); announceArrivals(list);
  };
  const loadAll = async () => {
    await Promise.all([store.load().catch(() => {}), alarms.load(), health.poll().catch((error) => health.fail(error))]);
    try {
      if (mapLoaded) await map.refreshDynamic(); else { await map.loadStatic(); mapLoaded = true; }
    } catch (error) { console.warn('map layers:', error.message); }
    facilities.set(map.data.facilities || []);
    await events().catch(() => {});
  };
  // A signed-in token without data:read (an agency's 112/119 terminal token) has nothing to see here: the page
  // says the dashboard is for the operation centre, and reads nothing (no alarms, stream, map layers or polls).
  const forRole = () => {
    const ok = !auth?.signedIn || mayUseDashboard();
    $('role-notice').hidden = ok;
    document.querySelector('main.layout').hidden = !ok;
    document.body.dataset.role = ok ? '' : 'not-for-role';
    return ok;
  };
  auth = new SignIn({ root: $('auth'), form: $('auth-form'), input: $('auth-token'), message: $('auth-message'),
    open: $('auth-open'), user: $('auth-user'), signOut: $('auth-signout'),
    onSignedIn: async () => {
      if (!forRole()) { live.stop('closed'); return; }
      live.restart(); await loadAll(); detail.refresh();
    },
    onSignedOut: () => live.stop('closed') }); // then the page reloads: nothing read with the token stays
  await auth.start();
  if (forRole()) {
    live.start();
    await loadAll();
  } else {
    live.stop('closed');
  }
  setInterval(() => { if (forRole()) health.poll().catch((error) => health.fail(error)); }, HEALTH_POLL_MS);
  setInterval(async () => {
    if (!mapLoaded || !forRole()) return;
    try { await map.refreshDynamic(); } catch (error) { console.warn('map layers:', error.message); }
    facilities.set(map.data.facilities || []);
    await events().catch(() => {});
  }, config.refreshSeconds * 1000);
  document.body.dataset.ready = 'true';
  window.ucity = { map, store, alarms, detail, health, live, auth };
}

start().catch((error) => {
  document.body.dataset.ready = 'error';
  console.error(error);
});
