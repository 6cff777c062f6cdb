// The live map: base tiles (or a plain background with the district outline), situations,
// cameras, facilities by grade, parking availability, electric-fire boards, masked care areas.
import * as L from '/static/vendor/leaflet/leaflet-src.esm.js';
import { allEntities, getJSON } from './api.js';
import { ClusterLayer } from './cluster.js';
import { convexHull, pointOf, snapToCell } from './geometry.js';
import { config, onLangChange, t } from './i18n.js';
import { agencyStatusLine, eventLabel } from './ops.js';
import { entityLabel, entityType, isPersonal } from './privacy.js';
import * as store from './store.js';
import { throttle } from './ui.js';

const CENTRE = [37.495, 126.87]; // Guro-gu, until the data says where the district is
const GRADE_COLOURS = { A: '#1b9e4b', B: '#7cbf3a', C: '#e0b000', D: '#ef7d00', E: '#c81e1e' };
// Leakage bands of EFIRE-R2 (mA), for colour only: alarms come from the rules, not from here.
const LEAK_BANDS = [[30, '#d62828'], [20, '#ef7d00'], [10, '#d4a100'], [5, '#2f80ed']];
const EVENTS_SINGLE_ZOOM = 16; // from this zoom on every situation has its own icon
const DEFAULT_CELL = [300 / (111320 * Math.cos((37.5 * Math.PI) / 180)), 300 / 111320];

// The worst level of clustered situations' items ({level}).
function worstLevel(items) {
  return items.reduce((worst, item) => (store.rank(item) > store.rank({ level: worst }) ? item.level : worst), items[0]?.level || 'interest');
}

export function gradeOf(facility) { return facility.dataSafetyGrade || facility.legalSafetyGrade || ''; }

function leakColour(board) {
  const v = Number(board.leakageCurrent);
  return (LEAK_BANDS.find(([at]) => v >= at) || [0, '#6c757d'])[1];
}

function lonlat(entity) { return pointOf(entity.location) || [NaN, NaN]; }

export { entityType }; // (privacy.js) the type of an NGSI-LD entity id

function escape(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

export class CityMap {
  constructor(element, { onSituation, onFacility, onEvent }) {
    this.onSituation = onSituation;
    this.onFacility = onFacility;
    this.onEvent = onEvent;
    this.opsEvents = [];
    this.careCell = DEFAULT_CELL;
    this.counts = {};
    this.data = { cameras: [], facilities: [], boards: [], sites: [], spots: [] };
    this.map = L.map(element, { keyboard: true, zoomControl: true, zoomSnap: 0.25, zoomDelta: 0.5, maxZoom: config.tileMaxZoom })
      .setView(CENTRE, 14);
    this.map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    this.fitted = false;
    this.base();
    this.layers = {
      care: L.layerGroup(),
      facilities: L.layerGroup(),
      parking: L.layerGroup(),
      cameras: new ClusterLayer({
        name: 'cameras', singleZoom: 17, point: lonlat, clusterTitle: (n) => t('camera.count', { n }),
        marker: (cam, latlng, renderer) => L.circleMarker(latlng, { renderer, radius: 4, color: '#fff', weight: 1, fillColor: '#3d5a80', fillOpacity: 0.9 })
          .bindTooltip(`${escape(cam.cameraName)}<br>${escape(cam.managingAgency || '')}`),
      }),
      boards: new ClusterLayer({
        name: 'boards', singleZoom: 18, cellPx: 48, point: lonlat,
        clusterColour: (items) => leakColour(items.reduce((a, b) => (Number(b.leakageCurrent) > Number(a.leakageCurrent) ? b : a))),
        clusterTitle: (n) => `${t('layer.boards')} ${n}`,
        marker: (board, latlng, renderer) => L.circleMarker(latlng, { renderer, radius: 5, color: '#fff', weight: 1, fillColor: leakColour(board), fillOpacity: 0.95 })
          .bindTooltip(`${escape(board.marketName)} #${escape(board.storeNumber)}<br>${t('board.leakage')} ${escape(board.leakageCurrent)} mA`),
      }),
      events: L.layerGroup(),
    };
    // Situations (and events no alarm stands for) in a storm: the `serious` ones always drawn one by one, the others
    // clustered by screen cell below zoom 16, a count icon in the worst level's colour that zooms in when clicked
    // (QA16 F9: 505 overlapping icons, some unclickable).
    this.eventsPlain = L.layerGroup().addTo(this.layers.events);
    this.eventsCluster = new ClusterLayer({
      name: 'events', singleZoom: EVENTS_SINGLE_ZOOM, cellPx: 44, point: (item) => item.point, keyboard: true,
      zIndexOffset: 1000,
      marker: (item) => item.make(),
      clusterClass: (items) => `evt-cluster lvl-${worstLevel(items)}`,
      clusterData: (items) => ({ count: String(items.length), level: worstLevel(items) }),
      clusterTitle: (n, items) => t('map.situationCluster', { n, level: t(`level.${worstLevel(items)}`) }),
    });
    this.layers.events.addLayer(this.eventsCluster);
    this.eventsRenderer = L.canvas({ padding: 0.2 });
    store.onChange(throttle(() => this.renderEvents(), 400));
    onLangChange(() => {
      this.renderFacilities(); this.renderParking(); this.renderCare(); this.renderEvents();
      this.layers.cameras.redraw(); this.layers.boards.redraw(); // their count titles are in the language too
    });
  }

  // Tiles when configured and reachable; otherwise a plain background (the outline still shows).
  base() {
    const url = config.tileUrl;
    if (!url) { this.noTiles(); return; }
    const tiles = L.tileLayer(url, { maxZoom: config.tileMaxZoom, attribution: config.tileAttribution, crossOrigin: false });
    let loaded = 0, failed = 0;
    tiles.on('tileload', () => { loaded += 1; });
    tiles.on('tileerror', () => {
      failed += 1;
      if (failed >= 4 && loaded === 0) { tiles.remove(); this.noTiles(); }
    });
    tiles.addTo(this.map);
  }

  noTiles() {
    this.map.getContainer().classList.add('no-tiles');
    document.getElementById('no-tiles').hidden = false;
  }

  setVisible(key, on) {
    const layer = this.layers[key];
    if (!layer) return;
    if (on) layer.addTo(this.map); else layer.remove();
  }

  setCount(key, n) {
    this.counts[key] = n;
    const el = document.querySelector(`[data-layer-count="${key}"]`);
    if (el) el.textContent = n == null ? '' : String(n);
  }

  async loadStatic() {
    const [cameras, facilities] = await Promise.all([
      allEntities('Camera', ['location', 'cameraName', 'installationPurpose', 'managingAgency']),
      this.loadFacilities(),
    ]);
    this.data.cameras = cameras.filter((c) => c.location);
    this.layers.cameras.setItems(this.data.cameras);
    this.setCount('cameras', this.data.cameras.length);
    this.outline([...this.data.cameras, ...facilities].map(lonlat).filter((p) => Number.isFinite(p[0])));
    await Promise.all([this.loadCare(), this.loadParking(), this.loadBoards()]);
  }

  async refreshDynamic() {
    await Promise.all([this.loadFacilities(), this.loadParking(), this.loadBoards()]);
  }

  outline(points) {
    const ring = convexHull(points);
    if (this.outlineLayer) this.outlineLayer.remove();
    if (!ring.length) return;
    this.outlineLayer = L.polygon(ring.map(([lon, lat]) => [lat, lon]), {
      color: '#14263d', weight: 2, dashArray: '6 5', fill: true, fillColor: '#ffffff', fillOpacity: 0.35, interactive: false,
    }).addTo(this.map);
    this.outlineLayer.bringToBack();
    if (!this.fitted) { this.map.fitBounds(this.outlineLayer.getBounds(), { padding: [10, 10] }); this.fitted = true; }
  }

  async loadFacilities() {
    const list = await allEntities('Building', ['location', 'name', 'legalSafetyGrade', 'dataSafetyGrade', 'facilityClass', 'category']);
    this.data.facilities = list.filter((f) => f.location);
    this.renderFacilities();
    return this.data.facilities;
  }

  renderFacilities() {
    const layer = this.layers.facilities;
    layer.clearLayers();
    for (const f of this.data.facilities) {
      const [lon, lat] = lonlat(f);
      const grade = gradeOf(f);
      const marker = L.circleMarker([lat, lon], { radius: 7, color: '#14263d', weight: 1.5, fillColor: GRADE_COLOURS[grade] || '#8792a2', fillOpacity: 0.95 })
        .bindTooltip(`${escape(f.name)} · ${t('field.grade')} ${escape(grade || '–')}`);
      marker.on('click', () => this.onFacility(f.id));
      layer.addLayer(marker);
    }
    this.setCount('facilities', this.data.facilities.length);
  }

  async loadParking() {
    const [on, off, spots] = await Promise.all([
      allEntities('OnStreetParking', ['location', 'name', 'totalSpotNumber', 'availableSpotNumber']),
      allEntities('OffStreetParking', ['location', 'name', 'totalSpotNumber', 'availableSpotNumber']),
      allEntities('ParkingSpot', ['status', 'refParkingSite']),
    ]);
    this.data.sites = [...on, ...off].filter((s) => s.location);
    this.data.spots = spots;
    this.renderParking();
  }

  // Availability per site: the site's own availableSpotNumber when a parking service keeps one,
  // else counted from its spots' status.
  availability(site) {
    const spots = this.data.spots.filter((s) => s.refParkingSite === site.id);
    const free = site.availableSpotNumber ?? spots.filter((s) => s.status === 'free').length;
    const total = spots.length || site.totalSpotNumber || 0;
    return { free, total };
  }

  renderParking() {
    const layer = this.layers.parking;
    layer.clearLayers();
    for (const site of this.data.sites) {
      const [lon, lat] = lonlat(site);
      const { free, total } = this.availability(site);
      const ratio = total ? free / total : 0;
      const icon = L.divIcon({ className: `park-icon ${ratio < 0.1 ? 'low' : ratio < 0.3 ? 'mid' : ''}`, iconSize: [46, 18], html: `P ${free}/${total}` });
      layer.addLayer(L.marker([lat, lon], { icon, keyboard: false, title: `${site.name} ${t('parking.free', { free, total })}` })
        .bindTooltip(`${escape(site.name)}<br>${t('parking.free', { free, total })}`));
    }
    this.setCount('parking', this.data.sites.length);
  }

  async loadBoards() {
    const boards = await allEntities('ElectricBoard', ['location', 'marketName', 'storeNumber', 'leakageCurrent', 'temperature']);
    this.data.boards = boards.filter((b) => b.location);
    this.layers.boards.setItems(this.data.boards);
    this.setCount('boards', this.data.boards.length);
  }

  async loadCare() {
    this.care = await getJSON(config.careAreas, 'application/geo+json');
    this.careCell = this.care.cellDegrees || DEFAULT_CELL;
    this.renderCare();
    this.renderEvents();
  }

  renderCare() {
    const layer = this.layers.care;
    layer.clearLayers();
    if (!this.care) return;
    const max = Math.max(1, ...this.care.features.map((f) => f.properties.count || 0));
    layer.addLayer(L.geoJSON(this.care, {
      style: (f) => ({ color: '#6c3483', weight: 1, fillColor: '#8e44ad', fillOpacity: 0.15 + 0.45 * ((f.properties.count || 1) / max) }),
      onEachFeature: (f, l) => l.bindTooltip(`${t('care.households', { label: f.properties.label })}<br>${t('care.masked', { m: this.care.cellMetres })}`),
    }));
    this.setCount('care', this.care.total);
  }

  // Care alarms are drawn at their grid cell's centre, never at the home; so is a situation whose asset is a care
  // entity with no open alarm left (its event still open, QA16 F2).
  situationPoint(situation) {
    const p = pointOf(situation.location);
    if (!p) return null;
    const masked = situation.alarms.some((a) => isPersonal(a.entity_type)) || isPersonal(entityType(situation.key))
      || Boolean(situation.event && isPersonal(entityType(situation.event.entityId)));
    return masked ? snapToCell(p, this.careCell) : p;
  }

  // An operation-center event: about a care household (its entity an ElderlyHome or CareDevice, e.g. the event of a
  // care alarm that was closed while the event stays open), at its cell's centre as the care alarms (QA16 F2).
  eventPoint(event) {
    const p = pointOf(event.location);
    if (!p) return null;
    return isPersonal(entityType(event.entityId)) ? snapToCell(p, this.careCell) : p;
  }

  renderEvents() {
    const plain = this.eventsPlain;
    plain.clearLayers();
    const clustered = []; // {point, level, make()}: drawn by the cluster layer, one by one or counted
    const place = (point, level, make) => {
      if (level === 'serious') plain.addLayer(make()); // urgent: always on show, never inside a count
      else clustered.push({ point, level, make });
    };
    const list = store.situations();
    for (const situation of list) {
      const p = this.situationPoint(situation);
      if (!p) continue;
      const level = situation.level;
      if (level === 'fault') { // device faults: small and cheap (there can be thousands), under the safety icons
        const dot = L.circleMarker([p[1], p[0]], { renderer: this.eventsRenderer, radius: 4, color: '#fff', weight: 1, fillColor: '#7a5195', fillOpacity: 0.9 })
          .bindTooltip(`${t('level.fault')}: ${escape(assetName(situation.worst))}`);
        dot.on('click', () => this.onSituation(situation.key));
        plain.addLayer(dot);
        continue;
      }
      place(p, level, () => {
        const n = situation.alarms.length;
        const name = t(`level.${level}`);
        const icon = L.divIcon({
          className: `evt-icon lvl-${level}`, iconSize: [30, 30],
          html: `<span aria-hidden="true">!</span>${n > 1 ? `<span class="n">${n}</span>` : ''}`,
        });
        const marker = L.marker([p[1], p[0]], { icon, title: `${name}: ${assetName(situation.worst)}`, alt: name, riseOnHover: true, zIndexOffset: 1000 + store.rank(situation.worst) * 100 });
        marker.on('click', () => this.onSituation(situation.key));
        marker.on('add', () => {
          const el = marker.getElement();
          if (el) { el.dataset.situation = situation.key; el.dataset.level = level; }
        });
        return marker;
      });
    }
    // Operation-center events that no alarm on show stands for (a 112 report, an agency's event).
    const others = this.opsEvents.filter((e) => e.location && !(e.alarm && store.known(e.alarm)));
    for (const event of others) {
      const point = this.eventPoint(event);
      if (!point) continue;
      const [lon, lat] = point;
      place(point, event.level, () => {
        const icon = L.divIcon({ className: `evt-icon lvl-${event.level}`, iconSize: [30, 30], html: '<span aria-hidden="true">★</span>' });
        // The more serious on top, as the alarm icons (a serious report is never hidden under a lesser one at its spot).
        const progress = agencyStatusLine(event); // the agencies' reports back, if any ("119: 현장 도착 …")
        const marker = L.marker([lat, lon], { icon, title: `${t(`level.${event.level}`)}: ${eventLabel(event)}${progress ? ` · ${progress}` : ''}`,
          riseOnHover: true, zIndexOffset: 900 + store.rank(event) * 100 });
        marker.on('click', () => this.onEvent(event));
        marker.on('add', () => { const el = marker.getElement(); if (el) { el.dataset.event = event.id; el.dataset.level = event.level; } });
        return marker;
      });
    }
    this.eventsCluster.setItems(clustered);
    this.setCount('events', list.length + others.length);
  }

  setOpsEvents(events) { this.opsEvents = events; this.renderEvents(); }

  flyTo(situation) {
    const p = situation && this.situationPoint(situation);
    if (p) this.map.flyTo([p[1], p[0]], Math.max(this.map.getZoom(), 16), { duration: 0.6 });
  }
}

// What a map icon's tooltip calls an alarm's asset (QA16 F10): its name, else the last part of its id, never the full
// URN. A person's entity (a care household: the server's personal types, privacy.js) gives no name to the map, and
// its id's last part is masked ("k***-h***"), as it could be a name.
export function assetName(alarm) {
  const id = String(alarm.entity_id || '');
  const personal = isPersonal(alarm.entity_type) || isPersonal(entityType(id));
  const name = personal ? '' : alarm.entity_name;
  if (typeof name === 'string' && name) return name;
  return (personal ? entityLabel(id, alarm.entity_type, alarm.withheld?.includes('entity_id')) : id).split(':').pop();
}
