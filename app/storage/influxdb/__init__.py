"""InfluxDB 1.x, 2.x and 3.x through one data path (the 1.x HTTP protocol): layout, protocol,
setup, rollup, per-host locks, and the store that implements the write primitives."""
