// A small grid clusterer for thousands of points (4,100 cameras, 3,000 boards) on a Leaflet map.
// Points are bucketed by screen cell at the current zoom; only the visible ones are drawn, with
// a canvas renderer for single points and one count icon per cell. Redrawn on move and zoom.
import * as L from '/static/vendor/leaflet/leaflet-src.esm.js';

// Pure: cluster items by grid cell of `cellPx` in the projected (pixel) plane.
export function gridCluster(items, project, cellPx) {
  const cells = new Map();
  for (const item of items) {
    const p = project(item);
    const key = `${Math.floor(p.x / cellPx)}:${Math.floor(p.y / cellPx)}`;
    let cell = cells.get(key);
    if (!cell) { cell = { key, x: 0, y: 0, items: [] }; cells.set(key, cell); }
    cell.x += p.x; cell.y += p.y; cell.items.push(item);
  }
  return [...cells.values()].map((c) => ({ ...c, x: c.x / c.items.length, y: c.y / c.items.length }));
}

export class ClusterLayer extends L.Layer {
  // options: {name, cellPx, singleZoom, point(item) -> [lon, lat], marker(item, latlng), clusterColour(items),
  //           clusterClass(items) (more classes of a count icon), clusterData(items) (its data-* attributes),
  //           zIndexOffset, keyboard (count icons reachable with Tab)}
  constructor(options) {
    super();
    this.opts = { cellPx: 56, singleZoom: 17, ...options };
    this.items = [];
    this.group = L.layerGroup();
    this.renderer = L.canvas({ padding: 0.2 });
  }

  setItems(items) { this.items = items; if (this._map) this.redraw(); }

  onAdd(map) {
    this.group.addTo(map);
    map.on('moveend zoomend', this.redraw, this);
    this.redraw();
  }

  onRemove(map) {
    map.off('moveend zoomend', this.redraw, this);
    this.group.remove();
  }

  redraw() {
    const map = this._map;
    if (!map) return;
    this.group.clearLayers();
    const bounds = map.getBounds().pad(0.15);
    const zoom = map.getZoom();
    const visible = this.items.filter((item) => { const [lon, lat] = this.opts.point(item); return bounds.contains([lat, lon]); });
    if (zoom >= this.opts.singleZoom) {
      for (const item of visible) this.group.addLayer(this.single(item));
      return;
    }
    const project = (item) => { const [lon, lat] = this.opts.point(item); return map.project([lat, lon], zoom); };
    for (const cell of gridCluster(visible, project, this.opts.cellPx)) {
      if (cell.items.length === 1) { this.group.addLayer(this.single(cell.items[0])); continue; }
      const latlng = map.unproject([cell.x, cell.y], zoom);
      const n = cell.items.length;
      const size = n < 10 ? 26 : n < 100 ? 32 : 40;
      const colour = this.opts.clusterColour ? this.opts.clusterColour(cell.items) : '';
      const extra = this.opts.clusterClass ? ` ${this.opts.clusterClass(cell.items)}` : '';
      const icon = L.divIcon({
        className: `cluster-icon cluster-${this.opts.name}${extra}`, iconSize: [size, size],
        html: `<span style="${colour ? `background:${colour};border-radius:50%;padding:0 3px` : ''}">${n}</span>`,
      });
      const marker = L.marker(latlng, { icon, keyboard: Boolean(this.opts.keyboard), zIndexOffset: this.opts.zIndexOffset || 0,
        title: this.opts.clusterTitle ? this.opts.clusterTitle(n, cell.items) : String(n) });
      marker.on('click', () => map.setView(latlng, Math.min(zoom + 2, this.opts.singleZoom)));
      if (this.opts.clusterData) {
        const data = this.opts.clusterData(cell.items);
        marker.on('add', () => { const el = marker.getElement(); if (el) Object.assign(el.dataset, data); });
      }
      this.group.addLayer(marker);
    }
  }

  single(item) {
    const [lon, lat] = this.opts.point(item);
    return this.opts.marker(item, L.latLng(lat, lon), this.renderer);
  }
}
