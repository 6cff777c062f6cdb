// Times are UTC on the wire and shown in Asia/Seoul, whatever the browser's own zone.
import { currentLang } from './i18n.js';

const ZONE = 'Asia/Seoul';
const cache = new Map();

function formatter(withDate) {
  const key = `${currentLang()}|${withDate}`;
  if (!cache.has(key)) {
    const options = { timeZone: ZONE, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' };
    if (withDate) Object.assign(options, { year: 'numeric', month: '2-digit', day: '2-digit' });
    cache.set(key, new Intl.DateTimeFormat(currentLang() === 'ko' ? 'ko-KR' : 'en-GB', options));
  }
  return cache.get(key);
}

export function kst(iso, withDate = true) {
  if (!iso) return '–';
  const date = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : `${formatter(withDate).format(date)} KST`;
}

export function kstShort(ms) {
  return new Intl.DateTimeFormat(currentLang() === 'ko' ? 'ko-KR' : 'en-GB',
    { timeZone: ZONE, month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    .format(new Date(ms));
}
