// The alarm stream (server-sent events, GET /api/v1/stream), read with fetch() rather than EventSource:
// EventSource can send no header, and the bearer token must never go into a URL (server logs, history).
// The request carries Authorization and NGSILD-Tenant; on reconnection it sends Last-Event-ID, so the
// server replays what was missed. A stream that ends or fails is reconnected after the server's
// `retry:` time, doubling on each failure up to a cap; silence longer than WATCHDOG_MS (the server sends
// a heartbeat comment when idle) counts as a dead connection. 401 stops it and asks for sign-in; 403
// stops it with a notice (the role may not read alarms). The top bar's state: connecting, open,
// reconnecting (waiting to try again), closed (stopped: signed out, or a 401) or denied (403).
import { authHeaders, token, unauthorized } from './api.js';
import { t } from './i18n.js';
import { SseParser } from './sse.js';

const TYPES = ['raised', 'escalated', 'deescalated', 'reactivated', 'acknowledged', 'cleared', 'closed', 'updated'];
const PATH = '/api/v1/stream';
const DEFAULT_RETRY_MS = 2000;
const MAX_DELAY_MS = 30_000;
const WATCHDOG_MS = 60_000;

export class LiveStream {
  // `fetch` and `wait` (ms -> a promise) are the browser's own unless a test passes stand-ins (no real waiting).
  constructor(onAlarm, stateElement, { onOpen = () => {}, onEvent = () => {}, fetch: get = (...a) => fetch(...a),
    wait = (ms) => new Promise((resolve) => { this.timer = setTimeout(resolve, ms); }) } = {}) {
    Object.assign(this, { onAlarm, stateElement, onOpen, onEvent, get, wait });
    this.retryMs = DEFAULT_RETRY_MS;
    this.failures = 0;
    this.lastEventId = '';
    this.running = false;
    this.controller = null;
    this.timer = null;
    this.generation = 0;
  }

  state(name) {
    const el = this.stateElement;
    el.dataset.state = name;
    el.dataset.i18n = `live.${name}`;
    el.textContent = t(`live.${name}`);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.failures = 0;
    this.run(++this.generation);
  }

  stop(state = 'closed') {
    this.running = false;
    this.generation += 1;
    clearTimeout(this.timer);
    this.controller?.abort();
    this.controller = null;
    this.state(state);
  }

  // A fresh connection now (after sign-in): the resume point is kept.
  restart() { this.stop(); this.start(); }

  async run(generation) {
    const current = () => this.running && generation === this.generation;
    while (current()) {
      const controller = new AbortController();
      this.controller = controller;
      let watchdog = null;
      const kick = () => { clearTimeout(watchdog); watchdog = setTimeout(() => controller.abort(), WATCHDOG_MS); };
      const sent = token();
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
        kick();
        const response = await this.get(PATH, { headers, signal: controller.signal, cache: 'no-store' });
        if (response.status === 401 || response.status === 403) {
          const detail = await problemDetail(response);
          clearTimeout(watchdog);
          if (!current()) return;
          if (response.status === 401) { this.stop('closed'); unauthorized(sent, detail); } else { this.stop('denied'); }
          return;
        }
        if (!response.ok || !(response.headers.get('content-type') || '').startsWith('text/event-stream')) {
          throw new Error(`stream answered ${response.status}`);
        }
        if (!current()) { controller.abort(); return; }
        this.failures = 0;
        this.state('open');
        this.onOpen();
        await this.read(response, kick, current);
      } catch {
        if (current()) this.failures += 1; // refused, network down, or aborted by the watchdog
      } finally {
        clearTimeout(watchdog);
      }
      if (!current()) return;
      this.state('reconnecting');
      await this.wait(this.delay());
    }
  }

  // The wait before the next attempt: the server's `retry:` after a stream that ended, doubled for each
  // attempt that failed in a row, never more than MAX_DELAY_MS.
  delay() {
    return Math.min(MAX_DELAY_MS, this.retryMs * 2 ** Math.min(Math.max(this.failures - 1, 0), 10));
  }

  async read(response, kick, current) {
    const parser = new SseParser((event) => {
      this.lastEventId = event.lastEventId;
      this.onEvent(event);
      const type = event.type.startsWith('alarm.') ? event.type.slice(6) : null;
      if (type && TYPES.includes(type)) this.onAlarm(type, JSON.parse(event.data));
    }, (ms) => { this.retryMs = ms; });
    parser.lastEventId = this.lastEventId;
    const reader = response.body.getReader();
    const decoder = new TextDecoder('utf-8');
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !current()) break;
        kick();
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } finally {
      parser.end();
      reader.cancel().catch(() => {});
    }
  }
}

async function problemDetail(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || response.statusText;
  } catch { return response.statusText; }
}

export function connect(onAlarm, stateElement, options) {
  const stream = new LiveStream(onAlarm, stateElement, options);
  stream.start();
  return stream;
}
