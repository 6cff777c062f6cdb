// The cue for a new warning or serious alarm: a banner (role=alert, read by screen readers),
// a flashing row, and a short two-tone sound when the operator switched sound on.
import { alarmTitle } from './alarms.js';
import { onLangChange, t } from './i18n.js';

const CUE_LEVELS = new Set(['warning', 'serious']);
const CUE_EVENTS = new Set(['raised', 'escalated', 'reactivated']);

export class Cue {
  constructor({ banner, text, open, dismiss, toggle, onOpen }) {
    Object.assign(this, { banner, text, toggle });
    this.sound = false;
    this.audio = null;
    this.alarm = null;
    dismiss.addEventListener('click', () => { banner.hidden = true; });
    open.addEventListener('click', () => { if (this.alarm) onOpen(this.alarm); banner.hidden = true; });
    toggle.addEventListener('click', () => this.setSound(!this.sound));
    onLangChange(() => { if (this.alarm) this.text.textContent = this.message(this.alarm); });
  }

  message(alarm) { return `${t('cue.new', { level: t(`level.${alarm.level}`) })}: ${alarmTitle(alarm)}`; }

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
    this.alarm = alarm;
    this.banner.className = `cue lvl-${alarm.level}`;
    this.text.textContent = this.message(alarm);
    this.banner.hidden = false;
    document.body.dataset.lastCue = alarm.id;
    if (this.sound) this.beep(alarm.level === 'serious' ? 3 : 1);
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
