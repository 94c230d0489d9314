"""Reports: markdown rendering, latency, figures, compare, the plugin listing."""
