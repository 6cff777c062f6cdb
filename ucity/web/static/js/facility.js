// Facilities: the list tab (keyboard path to every facility) and the facility detail: its sensors' charts from
// the temporal API (the assessed change against the sensor's own ladder from the facility-safety API, the raw
// readings apart, in their real units), grades, inspections.
import { allEntities, entity, getJSON, temporal, temporalInstances } from './api.js';
import { lineChart } from './chart.js';
import { facilitySafety, sensorLadders } from './facility_api.js';
import { pick, t, tOr } from './i18n.js';
import { gradeOf } from './map.js';
import { kst } from './time.js';
import { h, kv } from './ui.js';

// Per sensor kind: the assessed attribute (the facility-safety domain's change from the installation baseline,
// compensated: what the sensor's ladder sees) and the raw measured ones (as the device sends them, its zero offset
// included). Shown in one display unit per channel: tilt in mrad, crack in mm, PPV in mm/s, with 2 decimals.
export const CHANNELS = {
  tilt: { assessed: 'tiltAssessed', raw: ['tiltX', 'tiltY'], unit: 'mrad', digits: 2 },
  crack: { assessed: 'crackOpeningAssessed', raw: ['crackOpening'], unit: 'mm', digits: 2 },
  vibration: { assessed: 'vibrationPPVAssessed', raw: ['vibrationPPV'], unit: 'mm/s', digits: 2 },
};
// unitCode -> factor to the channel's display unit: the domain's unit table (rules.UNITS, README "Plausibility
// and units"). A value without a unitCode is in the channel's stored unit (rad, mm, mm/s: the `''` entry); a code
// not in the table is never guessed: its values are plotted as sent, named with their code.
const DEG = Math.PI / 180;
export const UNIT_SCALE = {
  tilt: { '': 1000, C81: 1000, rad: 1000, C25: 1, mrad: 1, urad: 1e-3, 'µrad': 1e-3, DD: 1000 * DEG, deg: 1000 * DEG, '°': 1000 * DEG },
  crack: { '': 1, MMT: 1, mm: 1, '4H': 1e-3, um: 1e-3, 'µm': 1e-3, CMT: 10, cm: 10, MTR: 1000, m: 1000 },
  vibration: { '': 1, C16: 1, 'mm/s': 1, 'um/s': 1e-3, 'µm/s': 1e-3, '2M': 10, 'cm/s': 10, MTS: 1000, 'm/s': 1000 },
};
const TEMPERATURE = { attr: 'temperature', unit: '°C', scale: 1 };
const MAX_SENSORS = 12;

// A value in the channel's display unit, or null when its unit is unknown.
export function toDisplay(kind, value, unitCode) {
  const scale = UNIT_SCALE[kind]?.[unitCode || ''];
  const v = Number(value);
  return scale == null || !Number.isFinite(v) ? null : v * scale;
}

// "4.76 mrad": a value in the channel's display unit with its fixed decimals.
export function shown(kind, value) {
  const ch = CHANNELS[kind];
  return ch ? `${Number(value).toFixed(ch.digits)} ${ch.unit}` : `${+Number(value).toPrecision(4)}`;
}

function series(history, channel) {
  const values = [history?.[channel.attr]].flat().flatMap((s) => s?.values || []);
  return values.map(([v, at]) => [Date.parse(at), Number(v) * channel.scale])
    .filter((p) => Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
}

const instancesOf = (doc, attr) => [doc?.[attr]].flat().filter(Boolean);
const timeOf = (i) => Date.parse(i.observedAt || i.modifiedAt || i.createdAt);

// The assessed attribute's points on the sensor's current ladder (its datasetId: the instance the sensor entity
// holds now; the instances of ladders it left end with the handover's zero and are not drawn), in display units.
export function assessedPoints(kind, history, current) {
  const attr = CHANNELS[kind].assessed;
  const datasets = new Set(instancesOf(current, attr).map((i) => i.datasetId || ''));
  return instancesOf(history, attr).filter((i) => !datasets.size || datasets.has(i.datasetId || ''))
    .map((i) => [timeOf(i), toDisplay(kind, i.value, i.unitCode)])
    .filter((p) => Number.isFinite(p[0]) && p[1] != null).sort((a, b) => a[0] - b[0]);
}

// The raw readings in display units, one series per attribute; values in a unit not in the table get their own
// series named with the code, plotted as sent.
export function rawSeries(kind, history) {
  const out = [];
  for (const attr of CHANNELS[kind].raw) {
    const groups = new Map();
    for (const i of instancesOf(history, attr)) {
      if (i.datasetId) continue;
      const v = toDisplay(kind, i.value, i.unitCode);
      const name = v == null ? `${attr} [${i.unitCode}]` : attr;
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push([timeOf(i), v == null ? Number(i.value) : v]);
    }
    for (const [name, points] of groups) {
      out.push({ name, points: points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]) });
    }
  }
  return out;
}

// The sensor's own ladder in display units (the facility API gives it in the channel's unit: rad, mm, mm/s).
export function ladderEdges(kind, ladder) {
  if (!ladder || !CHANNELS[kind]) return [];
  return ladder.edges.map((e) => ({ level: e.level, at: toDisplay(kind, e.at, ladder.unit) }))
    .filter((e) => e.at != null);
}

export class FacilityList {
  constructor({ list, filter, count, onOpen }) {
    Object.assign(this, { list, filter, count, onOpen });
    this.items = [];
    filter.addEventListener('input', () => this.render());
  }

  set(facilities) { this.items = facilities; this.render(); }

  render() {
    const needle = this.filter.value.trim().toLowerCase();
    const order = (f) => 'EDCBA'.indexOf(gradeOf(f) || 'A');
    const shown = this.items.filter((f) => !needle || String(f.name).toLowerCase().includes(needle))
      .sort((a, b) => order(a) - order(b) || String(a.name).localeCompare(String(b.name)));
    this.count.textContent = t('facility.count', { n: shown.length });
    this.list.replaceChildren(...shown.map((f) => h('li', {},
      h('button', { type: 'button', dataset: { facility: f.id }, onclick: () => this.onOpen(f.id) },
        h('span', { class: `grade grade-${gradeOf(f) || 'none'}` }, gradeOf(f) || '–'), h('span', {}, f.name)))));
  }
}

export class FacilityView {
  constructor(panel, id) {
    this.kind = 'facility';
    this.panel = panel;
    this.key = id;
  }

  async render() {
    const { title, body } = this.panel;
    const facility = await entity(this.key);
    title.replaceChildren(t('facility.title'), ' · ', facility.name || this.key);
    const q = `controlledAsset=="${this.key}"`;
    const [sensors, safety] = await Promise.all([allEntities('StructuralSensor', null, { q }), facilitySafety(this.key)]);
    const charts = h('div', { class: 'charts' });
    body.replaceChildren(
      kv([
        [t('field.class'), facility.facilityClass && tOr(`fclass.${facility.facilityClass}`, facility.facilityClass)], [t('field.legalGrade'), facility.legalSafetyGrade],
        [t('field.dataGrade'), safety?.grade?.grade ?? facility.dataSafetyGrade ?? gradeStateWord(gradeState(safety, facility))],
        [t('field.lastInspection'), facility.lastInspectionDate], nextInspection(safety, facility),
        [t('field.yearBuilt'), facility.yearBuilt], [t('field.sensors'), sensors.length],
      ]),
      h('h3', {}, t('facility.charts')), charts,
      ...this.safetySections(safety));
    if (!sensors.length) { charts.append(h('p', { class: 'notice' }, t('facility.noSensors'))); return; }
    await this.charts(charts, sensors.slice(0, MAX_SENSORS), sensorLadders(safety));
  }

  // Per sensor: the assessed change from the installation baseline against the sensor's own ladder (the facility
  // API's: no other facility's or class's edges), and the raw readings on a chart of their own, each instance
  // converted from its unitCode (QA14 F4, F5); then the temperature of all sensors.
  async charts(container, sensors, ladders) {
    const loaded = await Promise.all(sensors.map(async (s) => {
      const ch = CHANNELS[s.sensorKind];
      const attrs = ch ? [ch.assessed, ...ch.raw] : [];
      const [history, current, temps] = await Promise.all([
        attrs.length ? temporalInstances(s.id, attrs).catch(() => ({})) : {},
        ch ? getJSON(`/ngsi-ld/v1/entities/${encodeURIComponent(s.id)}?attrs=${ch.assessed}`).catch(() => ({})) : {},
        temporal(s.id, [TEMPERATURE.attr]).catch(() => ({}))]);
      return { history, current, temps };
    }));
    sensors.forEach((sensor, i) => {
      const kind = sensor.sensorKind;
      const ch = CHANNELS[kind];
      if (!ch) return;
      const { history, current } = loaded[i];
      const ladder = ladders[sensor.id];
      const edges = ladderEdges(kind, ladder);
      const assessed = { name: ch.assessed, points: assessedPoints(kind, history, current) };
      const raw = rawSeries(kind, history);
      const latest = [assessed, ...raw].filter((d) => d.points.length)
        .map((d) => `${labelOf(d.name)}${d.name} ${d.name.includes('[') ? +d.points.at(-1)[1].toPrecision(4) : shown(kind, d.points.at(-1)[1])}`);
      const name = sensor.id.split(':').pop();
      container.append(h('figure', { dataset: { sensor: sensor.id, ladderRule: ladder?.rule || '' } },
        h('figcaption', {}, [name, tOr(`skind.${sensor.sensorKind}`, sensor.sensorKind),
          sensor.structuralMember && tOr(`member.${sensor.structuralMember}`, sensor.structuralMember)].filter(Boolean).join(' · '),
          h('span', { class: 'notice', 'data-role': 'latest' }, ` ${t('facility.latest')}: ${latest.join(', ') || '–'}${edges.length ? '' : ` · ${t('chart.noEdges')}`}`)),
        h('p', { class: 'chart-note' }, t('facility.assessedNote', { rule: ladder?.rule || '–' })),
        lineChart({ title: `${name} ${ch.assessed}`, series: [assessed], edges, unit: ch.unit, digits: ch.digits, role: 'assessed' }),
        h('p', { class: 'chart-note' }, t('facility.rawNote')),
        lineChart({ title: `${name} ${ch.raw.join('/')}`, series: raw, unit: ch.unit, digits: ch.digits, role: 'raw' })));
    });
    const temps = sensors.map((s, i) => ({ name: s.id.split(':').pop(), points: series(loaded[i].temps, TEMPERATURE) }));
    container.append(h('figure', { dataset: { sensor: 'temperature' } }, h('figcaption', {}, t('facility.temperature')),
      lineChart({ title: t('facility.temperature'), series: temps, unit: '°C' })));
  }

  // Data grade, its explanation and history, inspections and field tasks, from the facility-safety API.
  safetySections(safety) {
    if (!safety) return [h('h3', {}, t('facility.gradeHistory')), h('p', { class: 'notice' }, t('facility.domainMissing'))];
    // The explanation is the latest computation; the facility record may lag behind it.
    const grade = safety.grade ? safety.grade.grade : safety.dataSafetyGrade;
    const score = safety.grade ? safety.grade.score : safety.dataSafetyScore;
    const out = [
      h('h3', {}, t('field.dataGrade')),
      h('p', { 'data-role': 'data-grade' }, h('span', { class: `grade grade-${grade || 'none'}` }, grade || '–'),
        score != null ? ` ${t('facility.score')} ${Number(score).toFixed(2)}` : '',
        (safety.grade ? safety.grade.emergency?.recommended : safety.emergencyInspectionRecommended) ? h('strong', { class: 'bad-text' }, ` · ${t('facility.emergency')}`) : ''),
      gradeStatusLine(safety),
    ];
    if (safety.grade) out.push(h('h3', {}, t('facility.explanation')), explanation(safety.grade));
    const history = safety.gradeHistory || [];
    out.push(h('h3', {}, t('facility.gradeHistory')), history.length
      ? h('table', { class: 'history', 'data-role': 'grade-history' }, h('tbody', {}, history.slice().reverse().map((g) => h('tr', {},
        h('td', {}, kst(g.at)), h('td', {}, h('span', { class: `grade grade-${g.dataSafetyGrade || 'none'}` }, g.dataSafetyGrade || '–')),
        h('td', {}, g.dataSafetyScore != null ? Number(g.dataSafetyScore).toFixed(2) : ''),
        h('td', {}, g.emergencyInspectionRecommended ? t('facility.emergency') : '')))))
      : h('p', { class: 'notice' }, t('health.none')));
    out.push(h('h3', {}, t('facility.inspections')), h('table', { class: 'history', 'data-role': 'inspections' }, h('tbody', {},
      (safety.inspections || []).map((i) => h('tr', { class: i.status === 'overdue' ? 'bad-text' : '' },
        h('td', {}, pick(i.name) || i.kind), h('td', {}, `${t('field.lastInspection')} ${i.lastCompleted || '–'}`),
        h('td', {}, `${t('facility.due')} ${i.due || '–'}`), h('td', {}, tOr(`inspection.${i.status}`, i.status)))))));
    const tasks = safety.tasks || [];
    if (tasks.length) {
      out.push(h('h3', {}, t('facility.tasks')), h('ul', { class: 'plain', 'data-role': 'tasks' }, tasks.map((task) => h('li', {},
        `${pick(task.title) || task.kind} · ${tOr(`task.${task.status}`, task.status)} · ${kst(task.createdAt)}${task.due ? ` · ${t('facility.due')} ${kst(task.due)}` : ''}`))));
    }
    return out;
  }
}

// The data grade's state (QA5 F4) from the grade result (`status`, `coverage`, `provisionalGrade`), else the
// facility's `dataSafetyGradeStatus` / `dataSafetyCoverage`: ok, insufficient-data (too few main members scored:
// the grade is withheld, its letter kept as provisional, unless it recommends an emergency inspection) or
// no-data (no sensor scored). So that a withheld grade is not read as "no data".
export function gradeState(safety, facility = {}) {
  const result = safety?.grade || null;
  const cov = result?.coverage || null;
  return {
    status: result?.status ?? safety?.dataSafetyGradeStatus ?? facility?.dataSafetyGradeStatus ?? null,
    share: cov ? cov.share : safety?.dataSafetyCoverage ?? facility?.dataSafetyCoverage ?? null,
    scored: cov?.scored ?? null, attached: cov?.attached ?? null, basis: cov?.basis ?? null, minimum: cov?.minimum ?? null,
    provisional: result?.provisionalGrade ?? null,
    withheld: Boolean(result?.gradeWithheld) || (!result && (safety?.dataSafetyGradeStatus ?? facility?.dataSafetyGradeStatus) === 'insufficient-data'
      && (safety?.dataSafetyGrade ?? facility?.dataSafetyGrade) == null),
  };
}

const percent = (share) => `${Math.round(Number(share) * 100)}%`;

// One word for the state (the facility's key-value list, when there is no letter to show).
export function gradeStateWord(state) {
  if (!state.status) return null;
  if (state.status === 'insufficient-data') return t(state.withheld ? 'grade.status.withheld' : 'grade.status.insufficientStands');
  return tOr(`grade.status.${state.status}`, state.status);
}

// The state and the coverage as a line under the grade: "보류: 데이터 부족 · 잠정 등급 C · 채점 범위: 주부재 5개 중 3개 (60%, 최소 80%)".
export function gradeStatusLine(safety, facility = {}) {
  const state = gradeState(safety, facility);
  if (!state.status && state.share == null) return '';
  const parts = [];
  if (state.status) parts.push(gradeStateWord(state));
  if (state.provisional) parts.push(t('grade.provisional', { grade: state.provisional }));
  if (state.attached != null && state.scored != null) {
    parts.push(t('grade.coverageOf', { scored: state.scored, attached: state.attached,
      what: t(state.basis === 'all' ? 'grade.basis.all' : 'grade.basis.main'),
      share: state.share != null ? percent(state.share) : '–', minimum: state.minimum != null ? percent(state.minimum) : '–' }));
  } else if (state.share != null) {
    parts.push(t('grade.coverage', { share: percent(state.share) }));
  }
  return h('p', { class: state.status && state.status !== 'ok' ? 'notice attention' : 'notice', 'data-role': 'grade-status',
    dataset: { status: state.status || '', coverage: state.share ?? '' } }, parts.join(' · '));
}

// A number of the grade's explanation (in the channel's unit, e.g. 0.00475835 rad) as the charts show it: 4.76 mrad.
function number(kind, value, unit) {
  const v = toDisplay(kind, value, unit);
  return v == null ? `${+Number(value).toPrecision(4)} ${unit || ''}`.trim() : shown(kind, v);
}

// The next inspection due: the domain's legal schedule (the earliest due of the kinds the facility owes, named),
// not the facility record's `nextInspectionDate` (a simulator's or an import's figure, QA14 F11); the record's
// only without the facility-safety API, and labelled as the record's.
export function nextInspection(safety, facility) {
  const due = (safety?.inspections || []).filter((i) => i.due).sort((a, b) => String(a.due).localeCompare(String(b.due)))[0];
  if (due) {
    const el = h('span', { 'data-role': 'next-inspection', dataset: { source: 'schedule', kind: due.kind || '' } },
      `${due.due} (${pick(due.name) || due.kind}${due.status ? ` · ${tOr(`inspection.${due.status}`, due.status)}` : ''})`);
    return [t('field.nextInspectionSchedule'), el];
  }
  if (safety) return [t('field.nextInspectionSchedule'), h('span', { 'data-role': 'next-inspection', dataset: { source: 'schedule' } }, '–')];
  return [t('field.nextInspectionRecord'), facility.nextInspectionDate
    ? h('span', { 'data-role': 'next-inspection', dataset: { source: 'record' } }, facility.nextInspectionDate) : null];
}

// The grade's explanation: its summary, then one row per sensor with the numbers that produced it.
function explanation(result) {
  const rows = (result.sensors || []).map((row) => {
    const channels = (row.channels || []).map((ch) => [
      ch.level?.score != null ? `${ch.channel} ${number(ch.channel, ch.level.value, ch.unit)} → ${ch.level.band} (${ch.level.score})` : '',
      ch.trend?.score != null ? `${t('facility.trend')} ${number(ch.channel, ch.trend.slopePerYear, ch.unit)}/y (${ch.trend.score})` : '',
    ].filter(Boolean).join(' · ')).filter(Boolean).join('; ');
    return h('tr', { dataset: { sensor: row.sensor } },
      h('td', {}, row.name || String(row.sensor).split(':').pop()), h('td', {}, `${tOr(`member.${row.member}`, row.member)} ×${row.weight}`),
      h('td', {}, channels || '–'), h('td', {}, `${t('facility.events')} ${row.events?.count ?? 0} (${row.events?.score ?? '–'})`),
      h('td', {}, h('strong', {}, row.score != null ? String(row.score) : '–')));
  });
  return h('div', { 'data-role': 'explanation' }, h('p', {}, pick(result.summary)),
    h('table', { class: 'history' }, h('tbody', {}, rows)));
}

// A known attribute's name in words before its code (QA16 F10): "기울기 변화(평가) tiltAssessed 3.78 mrad".
function labelOf(attr) {
  const label = tOr(`attr.${String(attr).split('[')[0]}`, '');
  return label ? `${label} ` : '';
}
