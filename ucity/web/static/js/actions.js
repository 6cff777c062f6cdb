// The operator's actions on an alarm, through /api/v1/alarms/{id}/... (actor: X-Ucity-Actor).
import { postJSON } from './api.js';
import { t } from './i18n.js';
import { toast } from './ui.js';

const BASE = '/api/v1/alarms';

async function act(id, path, body) {
  try {
    return await postJSON(`${BASE}/${encodeURIComponent(id)}/${path}`, body);
  } catch (error) {
    toast(t('error.action', { detail: error.message }));
    throw error;
  }
}

export const acknowledge = (id) => act(id, 'acknowledge');
export const clear = (id) => act(id, 'clear');
export const assign = (id, assignee) => act(id, 'assign', { assignee: assignee || null });
export const comment = (id, text) => act(id, 'comments', { text });
export const close = (id, outcome, note) => act(id, 'close', { outcome, note: note || '' });

// Which actions the lifecycle allows in a status (alarms/model.py).
export function allowed(status) {
  return {
    acknowledge: status.endsWith('-unacknowledged'),
    clear: status.startsWith('active-'),
    close: status === 'active-acknowledged' || status === 'cleared-acknowledged',
    assign: status !== 'closed',
    comment: true,
  };
}
