// A parser of `text/event-stream` as the WHATWG HTML standard describes it (9.2 server-sent events),
// for a stream read with fetch(): lines end in CRLF, LF or CR (a CR at the end of one chunk and the LF
// at the start of the next are one line end); `:` starts a comment; `field: value` loses one leading
// space; `data` lines join with LF; `id` (without NUL) persists from event to event; `retry` takes
// digits only; a blank line dispatches (an event without data is not dispatched); an event not ended
// by a blank line when the stream ends is dropped. Text in, events out: decoding is the caller's
// (a TextDecoder with `stream: true`).
export class SseParser {
  constructor(onEvent, onRetry = () => {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buffer = '';
    this.afterCR = false; // the previous chunk ended in CR: an LF starting this one belongs to it
    this.started = false;
    this.lastEventId = '';
    this.reset();
  }

  reset() { this.data = ''; this.type = ''; }

  feed(text) {
    if (!this.started && text) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // one leading BOM is ignored
    }
    if (!text) return;
    if (this.afterCR && text.startsWith('\n')) text = text.slice(1);
    this.afterCR = false;
    const all = this.buffer + text;
    const ends = /\r\n|\r|\n/g; // one pass over the chunk: a burst of events costs no copying per line
    let from = 0;
    for (let match = ends.exec(all); match; match = ends.exec(all)) {
      if (match[0] === '\r' && match.index === all.length - 1) this.afterCR = true; // maybe a CRLF split in two
      this.line(all.slice(from, match.index));
      from = match.index + match[0].length;
    }
    this.buffer = all.slice(from);
  }

  line(line) {
    if (line === '') { this.dispatch(); return; }
    if (line.startsWith(':')) return; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') this.data += `${value}\n`;
    else if (field === 'id') { if (!value.includes('\0')) this.lastEventId = value; }
    else if (field === 'retry') { if (/^[0-9]+$/.test(value)) this.onRetry(Number(value)); }
  }

  dispatch() {
    if (this.data === '') { this.reset(); return; }
    const event = { type: this.type || 'message', data: this.data.slice(0, -1), lastEventId: this.lastEventId };
    this.reset();
    this.onEvent(event);
  }

  // The stream ended: a half-received event is dropped, the last event id is kept for resuming.
  end() { this.buffer = ''; this.afterCR = false; this.started = false; this.reset(); }
}
