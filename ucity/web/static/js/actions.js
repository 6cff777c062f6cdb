// The operator's actions on an alarm, through /api/v1/alarms/{id}/... (actor: the signed-in token's
// principal when the server requires sign-in; X-Ucity-Actor, the name in the top bar, as display name).
// A refusal (403: the role may not act on alarms) is said in a toast, not a broken panel.
import { errorText, postJSON } from './api.js';
import { can } from './auth.js';
import { toast } from './ui.js';

const BASE = '/api/v1/alarms';

async function act(id, path, body) {
  try {
    return await postJSON(`${BASE}/${encodeURIComponent(id)}/${path}`, body);
  } catch (error) {
    toast(errorText(error), 6000);
    return null; // said; the caller reloads what it shows either way

  }
}

export const acknowledge = (id) => act(id, 'acknowledge');
export const clear = (id) => act(id, 'clear');
// `assignee` null takes the assignee off (its own button in the panel: an empty field is refused, not an unassign).
export const assign = (id, assignee) => act(id, 'assign', { assignee: assignee ?? null });
export const comment = (id, text) => act(id, 'comments', { text });
export const close = (id, outcome, note) => act(id, 'close', { outcome, note: note || '' });

// Which actions the lifecycle allows in a status (alarms/model.py), and the signed-in role at all: every alarm
// action needs data:write, which a reader (a video wall, a data portal) has not, so it is offered none (QA7).
export function allowed(status) {
  const write = can('data:write');
  return {
    acknowledge: write && status.endsWith('-unacknowledged'),
    clear: write && status.startsWith('active-'),
    close: write && (status === 'active-acknowledged' || status === 'cleared-acknowledged'),
    assign: write && status !== 'closed',
    comment: write,
    readOnly: !write,
  };
}
