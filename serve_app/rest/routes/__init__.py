"""The REST routes, one module per resource; each ``router(backend, bodies)`` returns its APIRouter."""
