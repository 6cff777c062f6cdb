// Facilities: the list tab (keyboard path to every facility) and the facility detail: its sensors'
// charts from the temporal API with the rules' ladder edges, grades, inspections.
import { allEntities, entity, getJSON, temporal } from './api.js';
import { lineChart } from './chart.js';
import { facilitySafety, sensorLadders } from './facility_api.js';
import { pick, t, tOr } from './i18n.js';
import { gradeOf } from './map.js';
import { kst } from './time.js';
import { h, kv } from './ui.js';

// Display units: tilt is stored in rad and shown in mrad.
// `*Assessed` are the facility-safety domain's compensated values, on which its ladders work.
export const CHANNELS = {
  tilt: [{ attr: 'tiltX', unit: 'mrad', scale: 1000 }, { attr: 'tiltY', unit: 'mrad', scale: 1000 },
    { attr: 'tiltAssessed', unit: 'mrad', scale: 1000, ladder: true }],
  crack: [{ attr: 'crackOpening', unit: 'mm', scale: 1 }, { attr: 'crackOpeningAssessed', unit: 'mm', scale: 1, ladder: true }],
  vibration: [{ attr: 'vibrationPPV', unit: 'mm/s', scale: 1 }, { attr: 'vibrationPPVAssessed', unit: 'mm/s', scale: 1, ladder: true }],
};
const TEMPERATURE = { attr: 'temperature', unit: '°C', scale: 1 };
const MAX_SENSORS = 12;

function series(history, channel) {
  const values = history?.[channel.attr]?.values || [];
  return values.map(([v, at]) => [Date.parse(at), Number(v) * channel.scale])
    .filter((p) => Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
}

// Ladder edges per attribute from the threshold rules that watch the sensor type
// (`direction: abs` edges are drawn on both sides of zero).
export async function ladderEdges(entityType) {
  const rules = await getJSON(`/api/v1/rules?type=${encodeURIComponent(entityType)}&conditionType=threshold&enabled=true&limit=1000`).catch(() => []);
  const byAttr = {};
  for (const rule of Array.isArray(rules) ? rules : []) {
    const c = rule.condition || {};
    if (c.type !== 'threshold' || !c.attribute) continue;
    const edges = byAttr[c.attribute] || (byAttr[c.attribute] = []);
    for (const edge of c.edges || []) {
      edges.push({ level: edge.level, at: edge.at });
      if (c.direction === 'abs') edges.push({ level: edge.level, at: -edge.at });
      if (c.direction === 'below') edges[edges.length - 1].below = true;
    }
  }
  return byAttr;
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
    const [sensors, edges, safety] = await Promise.all([
      allEntities('StructuralSensor', null, { q }), ladderEdges('StructuralSensor'), facilitySafety(this.key)]);
    const charts = h('div', { class: 'charts' });
    body.replaceChildren(
      kv([
        [t('field.class'), facility.facilityClass], [t('field.legalGrade'), facility.legalSafetyGrade],
        [t('field.dataGrade'), safety?.grade?.grade ?? facility.dataSafetyGrade ?? gradeStateWord(gradeState(safety, facility))],
        [t('field.lastInspection'), facility.lastInspectionDate], [t('field.nextInspection'), facility.nextInspectionDate],
        [t('field.yearBuilt'), facility.yearBuilt], [t('field.sensors'), sensors.length],
      ]),
      h('h3', {}, t('facility.charts')), charts,
      ...this.safetySections(safety));
    if (!sensors.length) { charts.append(h('p', { class: 'notice' }, t('facility.noSensors'))); return; }
    await this.charts(charts, sensors.slice(0, MAX_SENSORS), edges, sensorLadders(safety));
  }

  async charts(container, sensors, edges, ladders) {
    const histories = await Promise.all(sensors.map((s) => {
      const channels = CHANNELS[s.sensorKind] || [];
      return temporal(s.id, [...channels.map((c) => c.attr), TEMPERATURE.attr]).catch(() => ({}));
    }));
    sensors.forEach((sensor, i) => {
      const channels = CHANNELS[sensor.sensorKind] || [];
      if (!channels.length) return;
      const unit = channels[0].unit;
      // The rules' edges on the plotted attributes, and the sensor's own ladder from the facility API
      // (it applies to the assessed change from the baseline; tilt X/Y may go either way).
      const own = (ladders[sensor.id] || []).flatMap((e) => (sensor.sensorKind === 'tilt' ? [e, { ...e, at: -e.at }] : [e]));
      const ladder = [...channels.flatMap((c) => (edges[c.attr] || []).map((e) => ({ ...e, at: e.at * c.scale }))),
        ...own.map((e) => ({ ...e, at: e.at * channels[0].scale }))];
      const unique = [...new Map(ladder.map((e) => [`${e.level}${e.at}`, e])).values()];
      const data = channels.map((c) => ({ name: c.attr, points: series(histories[i], c) })).filter((d) => d.points.length || !channels.find((c) => c.attr === d.name).ladder);
      const latest = data.map((d) => d.points.at(-1)).filter(Boolean).map((p, j) => `${data[j].name} ${+p[1].toPrecision(4)} ${unit}`);
      container.append(h('figure', { dataset: { sensor: sensor.id } },
        h('figcaption', {}, `${sensor.id.split(':').pop()} · ${sensor.sensorKind} · ${sensor.structuralMember || ''}`,
          h('span', { class: 'notice' }, ` ${t('facility.latest')}: ${latest.join(', ') || '–'}${unique.length ? '' : ` · ${t('chart.noEdges')}`}`)),
        lineChart({ title: `${sensor.id.split(':').pop()} ${channels.map((c) => c.attr).join('/')}`, series: data, edges: unique, unit })));
    });
    const temps = sensors.map((s, i) => ({ name: s.id.split(':').pop(), points: series(histories[i], TEMPERATURE) }));
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

// The grade's explanation: its summary, then one row per sensor with the numbers that produced it.
function explanation(result) {
  const rows = (result.sensors || []).map((row) => {
    const channels = (row.channels || []).map((ch) => [
      ch.level?.score != null ? `${ch.channel} ${+Number(ch.level.value).toPrecision(4)} ${ch.unit} → ${ch.level.band} (${ch.level.score})` : '',
      ch.trend?.score != null ? `${t('facility.trend')} ${+Number(ch.trend.slopePerYear).toPrecision(3)} ${ch.unit}/y (${ch.trend.score})` : '',
    ].filter(Boolean).join(' · ')).filter(Boolean).join('; ');
    return h('tr', { dataset: { sensor: row.sensor } },
      h('td', {}, row.name || String(row.sensor).split(':').pop()), h('td', {}, `${row.member} ×${row.weight}`),
      h('td', {}, channels || '–'), h('td', {}, `${t('facility.events')} ${row.events?.count ?? 0} (${row.events?.score ?? '–'})`),
      h('td', {}, h('strong', {}, row.score != null ? String(row.score) : '–')));
  });
  return h('div', { 'data-role': 'explanation' }, h('p', {}, pick(result.summary)),
    h('table', { class: 'history' }, h('tbody', {}, rows)));
}
