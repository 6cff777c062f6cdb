// Which entity types describe a person, and how their ids are shown. The server says which types are personal (the
// `privacy` component of `GET /health`: `personalEntityTypes`, the settings' and those the domains declare); until it
// has said (not signed in, an older server) the care types are. An id of such a type can be a name ("kim-younghee-home")
// and is shown masked as the server masks names: each word's first letter stays ("CareDevice:k***-y******-h***").
const DEFAULT = ['ElderlyHome', 'CareDevice'];
let types = new Set(DEFAULT);

export function setPersonalTypes(list) {
  if (Array.isArray(list) && list.length) types = new Set([...DEFAULT, ...list.map(String)]);
}

export function isPersonal(type) { return Boolean(type) && types.has(type); }

// The type of an NGSI-LD entity id (`urn:ngsi-ld:<Type>:<rest>`), '' for anything else.
export function entityType(id) { return /^urn:ngsi-ld:([^:]+):/.exec(String(id || ''))?.[1] || ''; }

export function maskWords(text) {
  return String(text ?? '').replace(/[^\s\-_.:/]+/gu, (word) => {
    const chars = [...word];
    return chars[0] + '*'.repeat(chars.length - 1);
  });
}

// An entity id as shown ("Type:id" without the URN prefix), masked when its type is a personal one. `type` is the
// alarm's `entity_type` when known; `withheld` an alarm the server already masked (its id is the Alert's).
export function entityLabel(id, type = '', withheld = false) {
  const short = String(id || '').replace(/^urn:ngsi-ld:/, '');
  if (withheld || !isPersonal(type || entityType(id))) return short;
  const cut = short.indexOf(':');
  return cut < 0 ? maskWords(short) : `${short.slice(0, cut)}:${maskWords(short.slice(cut + 1))}`;
}

// Free text that names entities (an alarm-made event's `details`: "… (경보 alarm <id>, urn:ngsi-ld:CareDevice:<id>)"):
// the ids of a person's entities in it masked.
export function maskPersonalIds(text) {
  return String(text ?? '').replace(/urn:ngsi-ld:([A-Za-z0-9_]+):([^\s,;)]+)/g,
    (whole, type) => (isPersonal(type) ? entityLabel(whole) : whole));
}
