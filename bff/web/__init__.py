"""HTTP layer: routes, static files, middleware."""
