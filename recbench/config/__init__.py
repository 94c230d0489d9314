"""Configuration: run configs, options, settings (environment variables), sweeps."""
