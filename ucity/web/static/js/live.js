// The alarm stream (SSE, /api/v1/stream). EventSource reconnects by itself and sends
// Last-Event-ID, so the server replays what was missed; a stream that ends is resumed.
import { streamUrl } from './api.js';
import { t } from './i18n.js';

const TYPES = ['raised', 'escalated', 'deescalated', 'reactivated', 'acknowledged', 'cleared', 'closed', 'updated'];

export function connect(onAlarm, stateElement) {
  const source = new EventSource(streamUrl());
  const state = (name) => {
    stateElement.dataset.state = name;
    stateElement.dataset.i18n = `live.${name}`;
    stateElement.textContent = t(`live.${name}`);
  };
  source.addEventListener('open', () => state('open'));
  source.addEventListener('error', () => state('closed')); // EventSource retries by itself
  for (const type of TYPES) {
    source.addEventListener(`alarm.${type}`, (event) => onAlarm(type, JSON.parse(event.data)));
  }
  return source;
}
