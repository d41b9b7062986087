"""How effects reach downstream systems: the HTTP adapter, the demo's fake, answers, the fleet-wide rate limit."""
