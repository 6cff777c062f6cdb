// The cue for a new warning or serious alarm: a banner (role=alert, read by screen readers),
// a flashing row, and a short two-tone sound when the operator switched sound on.
// While the banner is up it keeps the most severe alarm: a less severe one arriving meanwhile does
// not hide it (a caution storm must not push a serious alarm off the banner); it is counted instead
// ("and N more"), sounds once, and is in the alarm list as always.
import { alarmTitle } from './alarms.js';
import { onLangChange, t } from './i18n.js';

const CUE_LEVELS = new Set(['warning', 'serious']);
const CUE_EVENTS = new Set(['raised', 'escalated', 'reactivated']);
const RANK = { warning: 1, serious: 2 };

export class Cue {
  constructor({ banner, text, open, dismiss, toggle, onOpen }) {
    Object.assign(this, { banner, text, toggle });
    this.sound = false;
    this.audio = null;
    this.alarm = null;
    this.more = 0; // cue-worthy alarms that came while the banner showed a more severe one
    dismiss.addEventListener('click', () => this.hide());
    open.addEventListener('click', () => { if (this.alarm) onOpen(this.alarm); this.hide(); });
    toggle.addEventListener('click', () => this.setSound(!this.sound));
    onLangChange(() => { if (this.alarm) this.text.textContent = this.message(this.alarm); });
  }

  message(alarm) {
    const text = `${t('cue.new', { level: t(`level.${alarm.level}`) })}: ${alarmTitle(alarm)}`;
    return this.more ? `${text} ${t('cue.more', { count: this.more })}` : text;
  }

  hide() { this.banner.hidden = true; this.more = 0; }

  setSound(on) {
    this.sound = on;
    if (on && !this.audio) this.audio = new AudioContext(); // created on a click: allowed to play
    this.toggle.setAttribute('aria-pressed', String(on));
    const label = this.toggle.querySelector('[data-sound-text]');
    label.dataset.i18n = on ? 'sound.on' : 'sound.off';
    label.textContent = t(label.dataset.i18n);
  }

  wants(type, alarm) { return CUE_EVENTS.has(type) && CUE_LEVELS.has(alarm.level) && !alarm.derived; }

  show(alarm) {
    const shown = this.alarm;
    if (this.banner.hidden || !shown) {
      this.more = 0;
      this.put(alarm);
    } else if (shown.id === alarm.id) {
      this.put(alarm); // the same alarm, escalated
    } else {
      this.more += 1; // the one not on the banner is still in the list
      if (RANK[alarm.level] >= RANK[shown.level]) this.put(alarm);
    }
    this.text.textContent = this.message(this.alarm);
    document.body.dataset.lastCue = alarm.id;
    if (this.sound) this.beep(alarm.level === 'serious' ? 3 : 1);
  }

  put(alarm) {
    this.alarm = alarm;
    this.banner.className = `cue lvl-${alarm.level}`;
    this.banner.dataset.alarmId = alarm.id;
    this.banner.hidden = false;
  }

  beep(times) {
    const ctx = this.audio;
    if (!ctx) return;
    for (let i = 0; i < times * 2; i += 1) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = i % 2 ? 660 : 880;
      gain.gain.value = 0.15;
      osc.connect(gain).connect(ctx.destination);
      const at = ctx.currentTime + i * 0.22;
      osc.start(at);
      osc.stop(at + 0.18);
    }
  }
}
