"""Services: the work behind the API routes, with no web framework imports (keyword-only arguments)."""
