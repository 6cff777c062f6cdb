// The facility-safety domain's API (ucity/domains/facility_safety, issue 6): the facility detail with
// its sensors' ladders, data grade and explanation, grade history, inspections and field tasks.
// null when the server does not have that API (or not for this facility).
import { getJSON, missingRoute } from './api.js';

const BASE = '/api/v1/facility-safety/facilities';
let available = null;
const HOUR = 3_600_000;

// The window of the detail's hourly series (`series`, avg/min/max per period): the last 7 days up to the next full
// hour, so its buckets start on clock hours and stay the same on every reload (QA14 F11; without `from` the API
// starts them at the request's time).
export function hourWindow(now = Date.now(), days = 7) {
  const to = Math.ceil(now / HOUR) * HOUR;
  return { from: new Date(to - days * 24 * HOUR).toISOString().replace('.000Z', 'Z'),
    to: new Date(to).toISOString().replace('.000Z', 'Z'), period: 'PT1H' };
}

export async function facilitySafety(id) {
  if (available === false) return null;
  try {
    const body = await getJSON(`${BASE}/${encodeURIComponent(id)}?${new URLSearchParams(hourWindow())}`);
    available = true;
    return body;
  } catch (error) {
    if (missingRoute(error)) available = false;
    return null;
  }
}

// Each sensor's own ladder, the one the domain assesses it on (`ladder` of the detail's sensors: its rule, the
// channel's unit and the edges, level -> value, on the change from the installation baseline): sensor id ->
// {rule, unit, edges: [{level, at}]}. Only this ladder is drawn on the sensor's chart (QA14 F4), never the
// threshold rules of other facilities or building classes.
export function sensorLadders(safety) {
  const out = {};
  for (const sensor of safety?.sensors || []) {
    const ladder = sensor.ladder;
    if (ladder?.edges) {
      out[sensor.id] = { rule: ladder.rule, unit: ladder.unit, channel: ladder.channel,
        edges: Object.entries(ladder.edges).map(([level, at]) => ({ level, at: Number(at) })) };
    }
  }
  return out;
}
