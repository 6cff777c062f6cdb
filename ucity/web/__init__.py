"""The operator dashboard: one live map of the city, served at `/` (README.md here).

Jinja2 renders one page in the chosen language; small ES modules under `static/js/` (no build step)
read everything through ucity's public APIs from the browser and stay current through the alarm
stream (SSE). Leaflet comes from the `xstatic-leaflet` package. `routes.dashboard_routes` is what
server.py mounts; only this package and server.py import the web framework.
"""
