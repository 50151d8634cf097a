"""Suite-wide test settings."""

from hypothesis import HealthCheck, settings

# CI runs on 2 shared cores: timing-based health checks and deadlines measure the machine, not the code.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")
