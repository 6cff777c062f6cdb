// The facility-safety domain's API (ucity/domains/facility_safety, issue 6): the facility detail with
// its sensors' ladders, data grade and explanation, grade history, inspections and field tasks.
// null when the server does not have that API (or not for this facility).
import { getJSON, missingRoute } from './api.js';

const BASE = '/api/v1/facility-safety/facilities';
let available = null;

export async function facilitySafety(id) {
  if (available === false) return null;
  try {
    const body = await getJSON(`${BASE}/${encodeURIComponent(id)}`);
    available = true;
    return body;
  } catch (error) {
    if (missingRoute(error)) available = false;
    return null;
  }
}

// Ladder edges per measured attribute from the facility's sensors (level -> value, in the channel's unit).
export function sensorLadders(safety) {
  const out = {};
  for (const sensor of safety?.sensors || []) {
    if (sensor.ladder?.edges) out[sensor.id] = Object.entries(sensor.ladder.edges).map(([level, at]) => ({ level, at }));
  }
  return out;
}
