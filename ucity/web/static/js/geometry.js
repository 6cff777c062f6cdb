// Small geometry helpers on [lon, lat] positions.

// Convex hull (Andrew's monotone chain); returns a closed ring, or [] for fewer than 3 points.
export function convexHull(points) {
  const pts = [...new Map(points.map((p) => [`${p[0]},${p[1]}`, p])).values()]
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return [];
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const half = (list) => {
    const out = [];
    for (const p of list) {
      while (out.length >= 2 && cross(out[out.length - 2], out[out.length - 1], p) <= 0) out.pop();
      out.push(p);
    }
    out.pop();
    return out;
  };
  const hull = [...half(pts), ...half([...pts].reverse())];
  return [...hull, hull[0]];
}

// A point of any GeoJSON geometry (its first position; the centroid of a ring's vertices for polygons).
export function pointOf(geometry) {
  if (!geometry || !geometry.coordinates) return null;
  const c = geometry.coordinates;
  switch (geometry.type) {
    case 'Point': return c;
    case 'LineString': case 'MultiPoint': return c[Math.floor(c.length / 2)];
    case 'Polygon': {
      const ring = c[0].slice(0, -1);
      return [ring.reduce((s, p) => s + p[0], 0) / ring.length, ring.reduce((s, p) => s + p[1], 0) / ring.length];
    }
    default: return null;
  }
}

// Snap a position to the centre of the care grid cell that holds it (privacy masking).
export function snapToCell([lon, lat], [dlon, dlat]) {
  return [(Math.floor(lon / dlon) + 0.5) * dlon, (Math.floor(lat / dlat) + 0.5) * dlat];
}
