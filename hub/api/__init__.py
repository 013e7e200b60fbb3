"""The signed hub API: FastAPI app factory, routes (one module per group), JOSE, problem+json errors."""
