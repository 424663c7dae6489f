"""The pieces build_dashboards.py assembles: InfluxQL queries, panels, the two dashboards."""
