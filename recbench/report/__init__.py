"""Reports: one markdown skeleton with shared sections and each task's sections, significance
marks, latency, figures, compare, the plugin listing."""
